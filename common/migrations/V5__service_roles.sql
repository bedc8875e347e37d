-- Each service connects as its own role with only the privileges its queries need
-- (common/src/accounts.rs, docs/security.md "Service accounts"). The tables stay owned by the
-- role that runs the migrations, which no service uses. Roles belong to the whole PostgreSQL
-- cluster, so they are created only where missing; `duma-admin migrate` sets their passwords.
--
-- A later migration that adds a table or a query grants what it needs in the same file (a test checks
-- that every table is granted to some service).
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['duma_admin', 'duma_predictor', 'duma_advisor_worker',
                                     'duma_train_worker', 'duma_inference_worker'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE', role_name);
        END IF;
    END LOOP;
END
$$;

GRANT USAGE ON SCHEMA public
    TO duma_admin, duma_predictor, duma_advisor_worker, duma_train_worker, duma_inference_worker;

-- The admin: the REST API, the startup seed (superadmin, built-in models) and the reconciler.
GRANT SELECT, INSERT, UPDATE         ON users                TO duma_admin;
GRANT SELECT, INSERT                 ON datasets             TO duma_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON models               TO duma_admin;
GRANT SELECT, INSERT, UPDATE         ON train_jobs           TO duma_admin;
GRANT SELECT, INSERT, UPDATE         ON sub_train_jobs       TO duma_admin;
GRANT SELECT, UPDATE                 ON trials               TO duma_admin;
GRANT SELECT, INSERT                 ON trial_logs           TO duma_admin;
GRANT SELECT, INSERT, UPDATE         ON inference_jobs       TO duma_admin;
GRANT SELECT, INSERT                 ON inference_job_trials TO duma_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON work_leases          TO duma_admin;
GRANT SELECT, DELETE                 ON workers              TO duma_admin;
GRANT SELECT, INSERT, DELETE         ON prediction_keys      TO duma_admin;
GRANT USAGE ON SEQUENCE trial_logs_id_seq TO duma_admin;

-- The predictor only reads its routes and prediction keys.
GRANT SELECT ON inference_jobs, train_jobs, inference_job_trials, trials, prediction_keys
    TO duma_predictor;

-- The advisor worker: its worker row and leases, the sub jobs it advises, the trials it proposes.
GRANT SELECT, INSERT, UPDATE, DELETE ON workers        TO duma_advisor_worker;
GRANT SELECT, UPDATE, DELETE         ON work_leases    TO duma_advisor_worker;
GRANT SELECT, UPDATE                 ON train_jobs     TO duma_advisor_worker;
GRANT SELECT, UPDATE                 ON sub_train_jobs TO duma_advisor_worker;
GRANT SELECT                         ON models         TO duma_advisor_worker;
GRANT SELECT, INSERT                 ON trials         TO duma_advisor_worker;

-- The train worker: its worker row and leases, the trials it runs and their logs. Of users it
-- sees only who is a superadmin (never a password hash).
GRANT SELECT, INSERT, UPDATE, DELETE ON workers        TO duma_train_worker;
GRANT SELECT, UPDATE, DELETE         ON work_leases    TO duma_train_worker;
GRANT SELECT, UPDATE                 ON train_jobs     TO duma_train_worker;
GRANT SELECT, UPDATE                 ON sub_train_jobs TO duma_train_worker;
GRANT SELECT (id, user_type)         ON users          TO duma_train_worker;
GRANT SELECT, UPDATE                 ON models         TO duma_train_worker;
GRANT SELECT                         ON datasets       TO duma_train_worker;
GRANT SELECT, UPDATE                 ON trials         TO duma_train_worker;
GRANT INSERT                         ON trial_logs     TO duma_train_worker;
GRANT USAGE ON SEQUENCE trial_logs_id_seq TO duma_train_worker;

-- The inference worker: its worker row and leases, the inference jobs it serves.
GRANT SELECT, INSERT, UPDATE, DELETE ON workers              TO duma_inference_worker;
GRANT SELECT, UPDATE, DELETE         ON work_leases          TO duma_inference_worker;
GRANT SELECT, UPDATE                 ON inference_jobs       TO duma_inference_worker;
GRANT SELECT                         ON inference_job_trials TO duma_inference_worker;
GRANT SELECT                         ON trials               TO duma_inference_worker;
GRANT SELECT                         ON sub_train_jobs       TO duma_inference_worker;
GRANT SELECT                         ON train_jobs           TO duma_inference_worker;
GRANT SELECT                         ON models               TO duma_inference_worker;
