use duma_common::accounts::Account;
use duma_common::config::{DatabaseSettings, RolePasswords};
use duma_common::db::migrations;
use secrecy::SecretString;

#[tokio::test]
async fn migrations_apply_to_an_empty_database_and_then_are_a_no_op() {
    let url = duma_testkit::shared_servers().create_empty_database().await;
    let settings = DatabaseSettings {
        url: SecretString::from(url),
        ..DatabaseSettings::default()
    };

    let applied = migrations::run(&settings)
        .await
        .expect("first run applies the schema");
    assert_eq!(applied, migrations::embedded().len());
    assert!(applied > 0);

    let again = migrations::run(&settings)
        .await
        .expect("second run succeeds");
    assert_eq!(again, 0, "applying again must be a no-op");

    let pool = duma_common::db::pool(&settings).unwrap();
    let client = pool.get().await.unwrap();
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' \
             AND table_name IN ('users', 'datasets', 'models', 'train_jobs', 'sub_train_jobs', \
             'trials', 'trial_logs', 'inference_jobs', 'inference_job_trials', 'workers', 'work_leases')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 11);
}

/// Every table is reachable by some service role, and no role may do more than use tables:
/// no superuser, no role or database creation, no DDL in the schema.
#[tokio::test]
async fn every_table_is_granted_to_a_service_and_no_service_role_can_change_the_schema() {
    let ctx = duma_testkit::context().await;
    let client = ctx.pool.get().await.unwrap();
    let roles: Vec<&str> = Account::ALL.iter().map(|a| a.database_role()).collect();
    let names = |sql: &'static str| {
        let (client, roles) = (&client, &roles);
        async move {
            client
                .query(sql, &[roles])
                .await
                .unwrap()
                .iter()
                .map(|row| row.get::<_, String>(0))
                .collect::<Vec<_>>()
        }
    };
    let ungranted = names(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND c.relkind = 'r' \
               AND c.relname <> 'refinery_schema_history' \
               AND NOT EXISTS (SELECT 1 FROM unnest($1::text[]) r \
                               WHERE has_any_column_privilege(r, c.oid, 'SELECT') \
                                  OR has_table_privilege(r, c.oid, 'INSERT'))",
    )
    .await;
    assert!(
        ungranted.is_empty(),
        "tables no service may use: {ungranted:?}"
    );
    let powerful = names(
        "SELECT rolname FROM pg_roles WHERE rolname = ANY($1) \
               AND (rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls \
                    OR has_schema_privilege(rolname, 'public', 'CREATE') \
                    OR EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n \
                               ON n.oid = c.relnamespace \
                               WHERE n.nspname = 'public' AND c.relowner = pg_roles.oid))",
    )
    .await;
    assert!(
        powerful.is_empty(),
        "roles with more than grants: {powerful:?}"
    );
}

/// What the grants mean for two services: the predictor reads no user; the train worker sees who
/// is a superadmin but no password hash; neither writes what it only reads.
#[tokio::test]
async fn a_service_role_is_refused_what_its_service_does_not_need() {
    let ctx = duma_testkit::context().await;
    let connect = |account| {
        let settings = duma_testkit::as_account(&ctx.settings, account);
        async move {
            let pool = duma_common::db::pool(&settings.database).unwrap();
            pool.get().await.unwrap()
        }
    };
    let denied = |result: Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>| {
        let error = result.expect_err("refused");
        assert_eq!(
            error.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{error:?}"
        );
    };
    let predictor = connect(Account::Predictor).await;
    denied(predictor.query("SELECT email FROM users", &[]).await);
    denied(predictor.query("DELETE FROM prediction_keys", &[]).await);
    predictor
        .query("SELECT key_sha256 FROM prediction_keys", &[])
        .await
        .expect("its own route data");
    let train = connect(Account::TrainWorker).await;
    denied(train.query("SELECT password_hash FROM users", &[]).await);
    train
        .query("SELECT id, user_type FROM users", &[])
        .await
        .expect("who is a superadmin");
    denied(train.query("UPDATE datasets SET name = name", &[]).await);
    denied(train.query("CREATE TABLE loot (x int)", &[]).await);
}

/// `duma-admin migrate` gives each configured role its password as a SCRAM verifier, and lets
/// it log in.
#[tokio::test]
async fn the_migration_sets_each_configured_role_password_as_a_scram_verifier() {
    let url = duma_testkit::shared_servers().create_empty_database().await;
    let settings = DatabaseSettings {
        url: SecretString::from(url),
        role_passwords: RolePasswords {
            predictor: Some(SecretString::from("a-predictor-password-0123")),
            ..RolePasswords::default()
        },
        ..DatabaseSettings::default()
    };
    migrations::run(&settings).await.unwrap();
    let pool = duma_common::db::pool(&settings).unwrap();
    let client = pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT rolcanlogin, rolpassword FROM pg_authid WHERE rolname = 'duma_predictor'",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
    let verifier: String = row.get(1);
    assert!(verifier.starts_with("SCRAM-SHA-256$"), "{verifier}");
    assert!(!verifier.contains("a-predictor-password"));
}
