use duma_common::config::DatabaseSettings;
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
