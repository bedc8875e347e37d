-- The service level an inference job serves at (a deployment's; NULL: started outside any
-- deployment, served as `development`), so inference workers restricted to levels
-- (`inference_worker.service_levels`) claim only its replicas. Replicas per deployment:
-- each version it starts serves each trial on that many workers.
ALTER TABLE inference_jobs ADD COLUMN service_level text
    CHECK (service_level IN ('development', 'staging', 'production'));
ALTER TABLE deployments ADD COLUMN replicas integer NOT NULL DEFAULT 1
    CHECK (replicas BETWEEN 1 AND 16);
