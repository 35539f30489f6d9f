"""Rules for cloudbuild.yaml, read as text (PyYAML is not a dependency of .venv).

- every image is pinned to a version (never `latest`); the project is a
  substitution;
- `terraform apply` runs only on main and only as the deployer account;
- no secret reaches Terraform through the command line: the only `-var` is
  the project (everything else is in the committed tfvars, so the pipeline
  cannot undo what people set), no `-var`/`TF_VAR_` names a secret-looking or
  sensitive variable, and no Terraform step sees `secretEnv`;
- the tests run on the functions' Python (3.11), and the steps that use the
  virtualenv run on the image that built it;
- providers are locked before `terraform init`: `terraform providers lock`
  for every platform in LOCK_PLATFORMS runs in a step init waits for (the
  committed `.terraform.lock.hcl` holds the registry's `zh:` checksums, checked
  by `lockfile.py`; this adds the `h1:` hashes of the platforms in use);
- builds of main run one after the other: their plan and apply wait for the
  state lock (`-lock-timeout`) instead of failing on it.
"""

from __future__ import annotations

import re

_IMAGE = re.compile(r"^\s*(?:-\s*)?name:\s*(?P<image>\S+)\s*$", re.M)
_SUBSTITUTION = re.compile(r"^\s+(?P<key>_[A-Z0-9_]+):\s*(?P<value>\S+)\s*$", re.M)
_PINNED = re.compile(r"^[\w./-]+:(?!latest$)[\w.-]*\d[\w.-]*$")
_VAR = re.compile(r"-var(?:=|\s+)[\"']?(?P<name>[A-Za-z_][\w-]*)=(?P<value>[^\s\"']*)")
_TF_VAR = re.compile(r"TF_VAR_(?P<name>[A-Za-z_]\w*)=(?P<value>\S*)")
_SECRETISH = re.compile(r"secret|password|token|key|credential", re.I)
_STEP = re.compile(r"^  - id:\s*(?P<id>\S+)\s*$", re.M)

ALLOWED_VARS = {"project"}  # everything else lives in terraform/calsync.auto.tfvars
LOCK_PLATFORMS = ("linux_amd64", "darwin_arm64")  # Cloud Build; people's Macs
_WAIT_FOR = re.compile(r"^\s+waitFor:\s*\[(?P<ids>[^\]]*)\]", re.M)
PYTHON_CHECK = "sys.version_info[:2] == (3, 11)"


def steps(text: str) -> dict[str, tuple[str, str]]:
    """Step id -> (image as written, the step's text)."""
    found: dict[str, tuple[str, str]] = {}
    marks = list(_STEP.finditer(text))
    for mark, after in zip(marks, [*marks[1:], None], strict=True):
        body = text[mark.start(): after.start() if after else len(text)]
        image = _IMAGE.search(body)
        found[mark["id"]] = (image["image"] if image else "", body)
    return found


def _code(text: str) -> str:
    """The file without its comment lines: a rule is met by what runs, not by prose."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def problems(text: str, sensitive: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Every broken rule; `sensitive` names Terraform variables marked sensitive."""
    text = _code(text)
    found: list[str] = []
    substitutions = dict(_SUBSTITUTION.findall(text))
    for key in ("_PROJECT", "_DEPLOYER_SA"):
        if key not in substitutions:
            found.append(f"[cloudbuild] substitution {key} is missing")
    for match in _IMAGE.finditer(text):
        image = match["image"]
        ref = re.fullmatch(r"\$\{(_[A-Z0-9_]+)\}", image)
        resolved = substitutions.get(ref.group(1), "") if ref else image
        if not _PINNED.match(resolved):
            found.append(f"[cloudbuild] image {image} ({resolved or 'undefined'}) is not "
                         "pinned to a version")
    found += _secrets(text, steps(text), sensitive)
    found += _runtime(steps(text))
    found += _provider_lock(steps(text))
    found += _serialised(text)
    if "terraform apply" not in text:
        found.append("[cloudbuild] no terraform apply step")
        return found
    apply_block = text[text.find("terraform apply") - 400: text.find("terraform apply")]
    if 'if [ "${BRANCH_NAME}" = "main" ]' not in apply_block:
        found.append('[cloudbuild] terraform apply must be guarded by '
                     '`if [ "${BRANCH_NAME}" = "main" ]`')
    if "${_DEPLOYER_SA}" not in apply_block:
        found.append("[cloudbuild] terraform apply must refuse to run as anyone but "
                     "${_DEPLOYER_SA}")
    for needed in ("make test", "fmt", "-check", "infra.tfcheck", "terraform init",
                   "plan", "-lock=false"):
        if needed not in text:
            found.append(f"[cloudbuild] no step runs {needed!r}")
    return found


def _secrets(text: str, by_step: dict[str, tuple[str, str]],
             sensitive: set[str] | frozenset[str]) -> list[str]:
    found: list[str] = []
    secret_env = set(re.findall(r"^\s+(?:-\s*)?([A-Z_][A-Z0-9_]*):\s*projects/.+/secrets/",
                                text, re.M))
    for pattern, kind in ((_VAR, "-var"), (_TF_VAR, "TF_VAR_")):
        for match in pattern.finditer(text):
            name, value = match["name"], match["value"]
            if name in sensitive or _SECRETISH.search(name):
                found.append(f"[cloudbuild] {kind} {name} passes a secret on the command "
                             "line (and into the plan file): add a Secret Manager version "
                             "with gcloud instead")
            elif any(f"$${env}" in value or f"${{{env}}}" in value for env in secret_env):
                found.append(f"[cloudbuild] {kind} {name} takes its value from a secretEnv")
            elif name not in ALLOWED_VARS:
                found.append(f"[cloudbuild] {kind} {name} overrides the committed "
                             "terraform/calsync.auto.tfvars: set it there")
    for step_id, (_image, body) in by_step.items():
        if "terraform" in body and "secretEnv" in body:
            found.append(f"[cloudbuild] step {step_id} gives Terraform a secretEnv")
    return found


def _runtime(by_step: dict[str, tuple[str, str]]) -> list[str]:
    found: list[str] = []
    builders = [(sid, image) for sid, (image, body) in by_step.items() if "make test" in body]
    if not builders:
        return found
    test_id, test_image = builders[0]
    body = by_step[test_id][1]
    if PYTHON_CHECK not in body or "make test PYTHON=" not in body:
        found.append(f"[cloudbuild] step {test_id} must build the virtualenv on Python 3.11 "
                     f"(make test PYTHON=..., asserting {PYTHON_CHECK})")
    for step_id, (image, step_body) in by_step.items():
        if step_id != test_id and ".venv/bin/python" in step_body and image != test_image:
            found.append(f"[cloudbuild] step {step_id} runs .venv on {image}, but the "
                         f"virtualenv was built on {test_image} (its interpreter may not exist)")
    return found


def _provider_lock(by_step: dict[str, tuple[str, str]]) -> list[str]:
    ids = list(by_step)
    locks = [sid for sid, (_image, body) in by_step.items()
             if re.search(r"providers\W+lock", body)]
    if not locks:
        return ["[cloudbuild] no step runs `terraform providers lock` (the committed "
                ".terraform.lock.hcl holds zh: checksums only: the h1: hashes of the build's "
                "platforms are recorded by that step)"]
    found: list[str] = []
    body = by_step[locks[0]][1]
    for platform in LOCK_PLATFORMS:
        if f"-platform={platform}" not in body:
            found.append(f"[cloudbuild] step {locks[0]} does not lock the providers for "
                         f"-platform={platform}")
    for step_id, (_image, step_body) in by_step.items():
        if "terraform init" not in step_body:
            continue
        waits = _WAIT_FOR.search(step_body)
        before = ids[:ids.index(step_id)]
        waited = ([w.strip().strip("\"'") for w in waits["ids"].split(",")] if waits
                  else before)
        if locks[0] not in waited or locks[0] not in before:
            found.append(f"[cloudbuild] step {step_id} runs terraform init without waiting "
                         f"for step {locks[0]} (terraform providers lock)")
    return found


def _serialised(text: str) -> list[str]:
    found: list[str] = []
    for line in text.splitlines():
        command = line.strip()
        main_plan = command.startswith("terraform plan") and "-out=" in command
        apply = re.search(r"terraform apply\b", command) is not None
        if (main_plan or apply) and "-lock-timeout=" not in command:
            found.append(f"[cloudbuild] `{command[:60]}...` does not wait for the state lock "
                         "(-lock-timeout=...): a second build of main would fail on it")
    return found
