# The deployment's non-secret settings, committed: `terraform apply` from a
# workstation and the Cloud Build pipeline both read this file (Terraform
# loads *.auto.tfvars by itself), so neither undoes what the other set.
# Secrets never go here nor through -var: see README "Deploy".
# The project comes from the command line (-var=project=... or TF_VAR_project;
# the pipeline passes its own project).

region = "us-central1"

# Public HTTPS address Google pushes to; empty = the webhook's run.app URL.
webhook_public_url = ""

# OAuth client for per-user refresh tokens (the client id is not a secret);
# empty when every calendar is reached through domain-wide delegation.
oauth_client_id = ""

# Secret Manager versions the functions read (numbers, never "latest");
# moving one rolls the functions that read it (README: key rotation).
secret_versions = {}

# false where the organisation refuses allUsers (README: domain-restricted sharing).
webhook_public_invoker = true

# Consumer applications allowed to call the api function.
api_invokers = []

# Cloud Monitoring notification channel ids for the alerts.
alert_notification_channels = []

# Delivery to consumers (README: Delivery to consumers). An https address to
# push every change to (OIDC-authenticated), and/or the members of a consumer
# that pulls from its own subscription instead.
consumer_push_endpoint = ""
consumer_pull_members  = []
