-- A deployment's replicas can change after creation: the admin sets the replicas of the
-- inference jobs it routes to (docs/deployments.md).
GRANT UPDATE ON inference_job_trials TO duma_admin;
