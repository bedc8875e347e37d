-- A SERVE lease is `ready` once its holder has loaded the trial's model and serves its stream;
-- an inference job is RUNNING when every served trial has a ready lease.
ALTER TABLE work_leases ADD COLUMN ready boolean NOT NULL DEFAULT false;
