-- An inference job's own port on nginx (`admin.inference_job_ports`), so its `predictor_host` is a
-- plain `host:port`, as Rafiki's was. A port belongs to one live job at a time; a stopped job
-- keeps the number it had (history), and the port is free again.
ALTER TABLE inference_jobs ADD COLUMN predictor_port integer
    CHECK (predictor_port BETWEEN 1 AND 65535);
CREATE UNIQUE INDEX inference_jobs_one_live_per_port ON inference_jobs (predictor_port)
    WHERE predictor_port IS NOT NULL AND status IN ('STARTED', 'RUNNING');
