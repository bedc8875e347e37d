use std::time::Duration;

use chrono::Utc;
use duma_common::db::{
    self, DbError, GenericClient, datasets, inference_jobs, models, train_jobs, trials, users,
    workers,
};
use duma_domain::{
    AccessRight, Budget, DatasetId, JobStatus, KnobConfig, KnobValue, Knobs, LeaseKind, ModelId,
    Proposal, TemplateKind, TrialLogKind, TrialStatus, UserId, UserType, WorkerKind,
};
use duma_testkit::TestContext;
use serde_json::json;

async fn user(db: &impl GenericClient, email: &str, user_type: UserType) -> users::User {
    users::insert(db, email, "hash", user_type).await.unwrap()
}

async fn dataset(db: &impl GenericClient, owner: UserId, task: &str) -> datasets::Dataset {
    let id = DatasetId::new();
    let path = format!("datasets/{id}");
    datasets::insert(
        db,
        &datasets::NewDataset {
            id,
            user_id: owner,
            name: "iris",
            task,
            store_path: &path,
            size_bytes: 1234,
            sha256: &"ab".repeat(32),
        },
    )
    .await
    .unwrap()
}

fn new_model(owner: UserId, name: &str, access_right: AccessRight) -> models::NewModel {
    models::NewModel {
        id: ModelId::new(),
        user_id: owner,
        name: name.into(),
        task: "TABULAR_CLASSIFICATION".into(),
        template_kind: TemplateKind::Python,
        source_path: Some(format!("models/{name}.py")),
        source_sha256: Some("cd".repeat(32)),
        source_size_bytes: Some(99),
        model_class: "MyModel".into(),
        knob_config: None,
        dependencies: [("scikit-learn".to_owned(), "1.5.2".to_owned())].into(),
        access_right,
        docker_image: None,
        description: None,
        signature: None,
        checkpoint: None,
    }
}

fn new_train_job(
    owner: UserId,
    train: &datasets::Dataset,
    model_ids: Vec<ModelId>,
) -> train_jobs::NewTrainJob {
    train_jobs::NewTrainJob {
        user_id: owner,
        app: "fashion".into(),
        task: "TABULAR_CLASSIFICATION".into(),
        train_dataset_id: train.id,
        val_dataset_id: train.id,
        budget: Budget {
            model_trial_count: 5,
            ..Budget::default()
        },
        train_args: json!({"target": "class"}).as_object().cloned().unwrap(),
        model_ids,
        train_slots: 2,
    }
}

/// A user, a dataset, a model and a train job with one sub job.
pub struct Fixture {
    pub ctx: TestContext,
    pub owner: users::User,
    pub model: models::Model,
    pub job: train_jobs::TrainJob,
    pub sub: train_jobs::SubTrainJob,
}

pub async fn fixture() -> Fixture {
    let ctx = duma_testkit::context().await;
    let client = ctx.pool.get().await.unwrap();
    let owner = user(&client, "app@x.io", UserType::AppDeveloper).await;
    let train = dataset(&client, owner.id, "TABULAR_CLASSIFICATION").await;
    let model = models::insert(&client, &new_model(owner.id, "m1", AccessRight::Private))
        .await
        .unwrap();
    let mut client = client;
    let tx = client.transaction().await.unwrap();
    let (job, subs) = train_jobs::create(&tx, &new_train_job(owner.id, &train, vec![model.id]))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    drop(client);
    let sub = subs.into_iter().next().unwrap();
    Fixture {
        ctx,
        owner,
        model,
        job,
        sub,
    }
}

#[tokio::test]
async fn users_round_trip_and_duplicates_are_typed() {
    let ctx = duma_testkit::context().await;
    let db = ctx.pool.get().await.unwrap();
    let created = user(&db, "Dev@Example.com", UserType::ModelDeveloper).await;
    assert_eq!(
        users::by_id(&db, created.id).await.unwrap(),
        Some(created.clone())
    );
    assert_eq!(
        users::by_email(&db, "dev@example.com").await.unwrap(),
        Some(created.clone())
    );
    assert_eq!(users::list(&db).await.unwrap(), vec![created.clone()]);

    let err = users::insert(&db, "DEV@example.com", "h", UserType::Admin)
        .await
        .unwrap_err();
    assert!(err.is_duplicate_of(users::EMAIL_TAKEN), "{err:?}");

    let banned = users::ban(&db, created.id).await.unwrap().unwrap();
    assert!(banned.is_banned());
    assert_eq!(
        users::ban(&db, created.id).await.unwrap(),
        None,
        "banning twice changes nothing"
    );
    assert!(
        users::set_password_hash(&db, created.id, "new")
            .await
            .unwrap()
    );
    assert_eq!(
        users::by_id(&db, created.id)
            .await
            .unwrap()
            .unwrap()
            .password_hash,
        "new"
    );
}

#[tokio::test]
async fn datasets_round_trip_and_list_by_owner_and_task() {
    let ctx = duma_testkit::context().await;
    let db = ctx.pool.get().await.unwrap();
    let alice = user(&db, "a@x.io", UserType::AppDeveloper).await;
    let bob = user(&db, "b@x.io", UserType::AppDeveloper).await;
    let a1 = dataset(&db, alice.id, "TABULAR_CLASSIFICATION").await;
    let a2 = dataset(&db, alice.id, "IMAGE_CLASSIFICATION").await;
    dataset(&db, bob.id, "TABULAR_CLASSIFICATION").await;

    assert_eq!(datasets::by_id(&db, a1.id).await.unwrap(), Some(a1.clone()));
    assert_eq!(
        datasets::list_by_user(&db, alice.id, None).await.unwrap(),
        vec![a2.clone(), a1.clone()]
    );
    assert_eq!(
        datasets::list_by_user(&db, alice.id, Some("TABULAR_CLASSIFICATION"))
            .await
            .unwrap(),
        vec![a1]
    );
    assert_eq!(datasets::by_id(&db, DatasetId::new()).await.unwrap(), None);

    let err = datasets::insert(
        &db,
        &datasets::NewDataset {
            id: DatasetId::new(),
            user_id: UserId::new(),
            name: "x",
            task: "t",
            store_path: "p",
            size_bytes: 1,
            sha256: &"0".repeat(64),
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, DbError::ForeignKey { .. }), "{err:?}");
}

#[tokio::test]
async fn models_round_trip_with_name_uniqueness_visibility_and_use_protection() {
    let f = fixture().await;
    let db = f.ctx.pool.get().await.unwrap();
    assert_eq!(
        models::by_id(&db, f.model.id).await.unwrap(),
        Some(f.model.clone())
    );
    assert_eq!(
        f.model.dependencies.get("scikit-learn").map(String::as_str),
        Some("1.5.2")
    );

    let err = models::insert(&db, &new_model(f.owner.id, "m1", AccessRight::Public))
        .await
        .unwrap_err();
    assert!(err.is_duplicate_of(models::NAME_TAKEN), "{err:?}");

    let other = user(&db, "other@x.io", UserType::ModelDeveloper).await;
    let public = models::insert(&db, &new_model(other.id, "shared", AccessRight::Public))
        .await
        .unwrap();
    let private = models::insert(&db, &new_model(other.id, "hidden", AccessRight::Private))
        .await
        .unwrap();
    let visible: Vec<_> = models::list_available(&db, f.owner.id, None)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(visible, vec![f.model.id, public.id]);
    assert!(
        models::list_available(&db, f.owner.id, Some("POS_TAGGING"))
            .await
            .unwrap()
            .is_empty()
    );

    let config: KnobConfig =
        serde_json::from_value(json!({"k": {"type": "IntegerKnob", "min": 1, "max": 3}})).unwrap();
    assert!(
        models::set_knob_config(&db, private.id, &config)
            .await
            .unwrap()
    );
    assert_eq!(
        models::by_id(&db, private.id)
            .await
            .unwrap()
            .unwrap()
            .knob_config,
        Some(config)
    );

    let err = models::delete(&db, f.model.id).await.unwrap_err();
    assert!(
        matches!(err, DbError::ForeignKey { .. }),
        "a used model cannot be deleted: {err:?}"
    );
    assert_eq!(
        models::delete(&db, private.id).await.unwrap().map(|m| m.id),
        Some(private.id)
    );
    assert_eq!(models::by_id(&db, private.id).await.unwrap(), None);

    let builtin = models::NewModel {
        template_kind: TemplateKind::Native,
        source_path: None,
        ..new_model(other.id, "builtin", AccessRight::Public)
    };
    let first = models::upsert_builtin(&db, &builtin).await.unwrap();
    let again = models::upsert_builtin(&db, &builtin).await.unwrap();
    assert_eq!(first.id, again.id, "upserting a built-in keeps its id");
}

#[tokio::test]
async fn train_jobs_version_per_app_and_allow_one_live_job() {
    let f = fixture().await;
    let mut client = f.ctx.pool.get().await.unwrap();
    assert_eq!(f.job.app_version, 1);
    assert_eq!(f.job.status, JobStatus::Started);
    assert_eq!(f.job.budget.model_trial_count, 5);
    assert_eq!(
        train_jobs::by_id(&client, f.job.id).await.unwrap(),
        Some(f.job.clone())
    );
    assert_eq!(
        train_jobs::sub_jobs(&client, f.job.id).await.unwrap(),
        vec![f.sub.clone()]
    );

    let train = datasets::by_id(&client, f.job.train_dataset_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    let tx = client.transaction().await.unwrap();
    let err = train_jobs::create(&tx, &new_train_job(f.owner.id, &train, vec![f.model.id]))
        .await
        .unwrap_err();
    assert!(err.is_duplicate_of(train_jobs::ONE_LIVE_PER_APP), "{err:?}");
    drop(tx);

    let tx = client.transaction().await.unwrap();
    let stopped = train_jobs::stop(&tx, f.job.id).await.unwrap().unwrap();
    tx.commit().await.unwrap();
    assert_eq!(stopped.status, JobStatus::Stopped);
    assert!(stopped.datetime_stopped.is_some());
    assert_eq!(
        train_jobs::sub_jobs(&client, f.job.id).await.unwrap()[0].status,
        JobStatus::Stopped
    );

    let tx = client.transaction().await.unwrap();
    let (v2, _) = train_jobs::create(&tx, &new_train_job(f.owner.id, &train, vec![f.model.id]))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(v2.app_version, 2);
    let versions: Vec<i32> = train_jobs::list_by_app(&client, f.owner.id, "fashion")
        .await
        .unwrap()
        .iter()
        .map(|j| j.app_version)
        .collect();
    assert_eq!(versions, vec![2, 1]);
    assert_eq!(
        train_jobs::by_app_version(&client, f.owner.id, "fashion", None)
            .await
            .unwrap()
            .unwrap()
            .id,
        v2.id
    );
    assert_eq!(
        train_jobs::by_app_version(&client, f.owner.id, "fashion", Some(1))
            .await
            .unwrap()
            .unwrap()
            .id,
        f.job.id
    );
    assert_eq!(train_jobs::list_live(&client).await.unwrap().len(), 1);
    assert_eq!(
        train_jobs::list_by_user(&client, f.owner.id)
            .await
            .unwrap()
            .len(),
        2
    );

    let errored = train_jobs::set_sub_job_status(
        &client,
        train_jobs::sub_jobs(&client, v2.id).await.unwrap()[0].id,
        JobStatus::Errored,
        Some("bad template"),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(errored.error.as_deref(), Some("bad template"));
    let running = train_jobs::set_status(&client, v2.id, JobStatus::Running, None)
        .await
        .unwrap()
        .unwrap();
    assert!(running.datetime_stopped.is_none());
}

#[tokio::test]
async fn concurrent_train_job_creations_for_one_app_let_exactly_one_through() {
    let f = fixture().await;
    let db = f.ctx.pool.get().await.unwrap();
    {
        let mut c = f.ctx.pool.get().await.unwrap();
        let tx = c.transaction().await.unwrap();
        train_jobs::stop(&tx, f.job.id).await.unwrap();
        tx.commit().await.unwrap();
    }
    let train = datasets::by_id(&db, f.job.train_dataset_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    let attempts = (0..8).map(|_| {
        let pool = f.ctx.pool.clone();
        let new = new_train_job(f.owner.id, &train, vec![f.model.id]);
        tokio::spawn(async move {
            let mut client = pool.get().await.unwrap();
            let tx = client.transaction().await.unwrap();
            let result = train_jobs::create(&tx, &new).await;
            if result.is_ok() {
                tx.commit().await.unwrap();
            }
            result.map(|(job, _)| job.app_version)
        })
    });
    let results = futures::future::join_all(attempts).await;
    let ok: Vec<i32> = results
        .iter()
        .filter_map(|r| r.as_ref().unwrap().as_ref().ok().copied())
        .collect();
    assert_eq!(ok, vec![2], "exactly one creation wins, as version 2");
    for result in results {
        if let Err(err) = result.unwrap() {
            assert!(err.is_duplicate_of(train_jobs::ONE_LIVE_PER_APP), "{err:?}");
        }
    }
}

#[tokio::test]
async fn trials_and_logs_round_trip() {
    let f = fixture().await;
    let db = f.ctx.pool.get().await.unwrap();
    let worker = workers::register(&db, WorkerKind::Train, "host-1", &json!({"cpus": 2}))
        .await
        .unwrap();
    let mut knobs = Knobs::new();
    knobs.insert("depth".into(), KnobValue::Int(3));
    let mut started = Vec::new();
    for no in 1..=3 {
        let proposal = Proposal::new(no, knobs.clone());
        started.push(
            trials::insert_running(&db, f.sub.id, f.model.id, Some(worker.id), None, &proposal)
                .await
                .unwrap()
                .expect("a live sub job"),
        );
    }
    let first = &started[0];
    assert_eq!(first.status, TrialStatus::Running);
    assert_eq!(first.model_name, "m1");
    assert_eq!(first.train_job_id, f.job.id);
    assert_eq!(first.user_id, f.owner.id);
    assert_eq!(first.proposal.knobs, knobs);

    let err = trials::insert_running(
        &db,
        f.sub.id,
        f.model.id,
        None,
        None,
        &Proposal::new(2, knobs.clone()),
    )
    .await
    .unwrap_err();
    assert!(err.is_duplicate_of(trials::NUMBER_TAKEN), "{err:?}");

    let params = trials::SavedParams {
        path: "params/1".into(),
        sha256: "ef".repeat(32),
        size_bytes: 10,
    };
    assert!(
        trials::complete(&db, started[0].id, Some(0.8), Some(&params))
            .await
            .unwrap()
    );
    assert!(
        trials::complete(&db, started[1].id, Some(0.9), Some(&params))
            .await
            .unwrap()
    );
    assert!(trials::mark_errored(&db, started[2].id).await.unwrap());
    assert!(
        !trials::complete(&db, started[2].id, Some(1.0), None)
            .await
            .unwrap(),
        "finished trials stay finished"
    );

    let best: Vec<f64> = trials::best_by_train_job(&db, f.job.id, 2)
        .await
        .unwrap()
        .iter()
        .filter_map(|t| t.score)
        .collect();
    assert_eq!(best, vec![0.9, 0.8]);
    let per_sub = trials::best_per_sub_job(&db, f.job.id).await.unwrap();
    assert_eq!(per_sub.len(), 1);
    assert_eq!(per_sub[0].id, started[1].id);
    assert!(per_sub[0].is_params_saved());
    assert_eq!(
        trials::list_by_train_job(&db, f.job.id, 2, 1)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        trials::list_by_sub_job(&db, f.sub.id).await.unwrap().len(),
        3
    );
    assert_eq!(
        trials::by_id(&db, started[2].id)
            .await
            .unwrap()
            .unwrap()
            .status,
        TrialStatus::Errored
    );

    let logs: Vec<duma_domain::TrialLog> = (0..500)
        .map(|i| duma_domain::TrialLog {
            datetime: Utc::now(),
            kind: if i == 0 {
                TrialLogKind::Plot
            } else {
                TrialLogKind::Metrics
            },
            payload: json!({"epoch": i, "loss": 1.0 / (i as f64 + 1.0)}),
        })
        .collect();
    trials::insert_logs(&db, first.id, &logs).await.unwrap();
    let read = trials::logs(&db, first.id).await.unwrap();
    assert_eq!(read.len(), 500);
    assert_eq!(read[0].kind, TrialLogKind::Plot);
    assert_eq!(read[499].payload["epoch"], 499);
}

/// A running trial of the fixture's sub job, and an inference job serving it with
/// `desired_replicas` replicas.
async fn inference_job_serving_one_trial(
    f: &Fixture,
    desired_replicas: i32,
) -> (inference_jobs::InferenceJob, inference_jobs::ServedTrial) {
    inference_job_serving_one_trial_on(f, desired_replicas, 0).await
}

/// [`inference_job_serving_one_trial`] with `gpus` per replica.
async fn inference_job_serving_one_trial_on(
    f: &Fixture,
    desired_replicas: i32,
    gpus: i64,
) -> (inference_jobs::InferenceJob, inference_jobs::ServedTrial) {
    let mut client = f.ctx.pool.get().await.unwrap();
    let trial = trials::insert_running(
        &client,
        f.sub.id,
        f.model.id,
        None,
        None,
        &Proposal::new(1, Knobs::new()),
    )
    .await
    .unwrap()
    .expect("a live sub job");
    let served = inference_jobs::ServedTrial {
        trial_id: trial.id,
        desired_replicas,
    };
    let tx = client.transaction().await.unwrap();
    let job = inference_jobs::create(
        &tx,
        f.owner.id,
        f.job.id,
        &json!({"GPU_COUNT": gpus}),
        std::slice::from_ref(&served),
        None,
        None,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    (job, served)
}

#[tokio::test]
async fn inference_jobs_serve_trials_and_allow_one_live_job_per_train_job() {
    let f = fixture().await;
    let (job, served) = inference_job_serving_one_trial(&f, 2).await;
    let served = [served];
    let mut client = f.ctx.pool.get().await.unwrap();
    assert_eq!(
        (job.app.as_str(), job.app_version, job.status),
        ("fashion", 1, JobStatus::Started)
    );
    assert_eq!(
        inference_jobs::by_id(&client, job.id).await.unwrap(),
        Some(job.clone())
    );
    assert_eq!(
        inference_jobs::served_trials(&client, job.id)
            .await
            .unwrap(),
        served.to_vec()
    );
    assert_eq!(
        inference_jobs::live_for_train_job(&client, f.job.id)
            .await
            .unwrap()
            .map(|j| j.id),
        Some(job.id)
    );

    let tx = client.transaction().await.unwrap();
    let err = inference_jobs::create(&tx, f.owner.id, f.job.id, &json!({}), &served, None, None)
        .await
        .unwrap_err();
    assert!(
        err.is_duplicate_of(inference_jobs::ONE_LIVE_PER_TRAIN_JOB),
        "{err:?}"
    );
    drop(tx);

    let stopped = inference_jobs::set_status(&client, job.id, JobStatus::Stopped, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stopped.status, JobStatus::Stopped);
    assert!(
        inference_jobs::set_status(&client, job.id, JobStatus::Running, None)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        inference_jobs::list_by_user(&client, f.owner.id)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        inference_jobs::list_by_app(&client, f.owner.id, "fashion")
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(inference_jobs::list_live(&client).await.unwrap().is_empty());
}

#[tokio::test]
async fn leases_are_claimed_once_renewed_by_heartbeats_and_reclaimed_after_expiry() {
    let f = fixture().await;
    let db = f.ctx.pool.get().await.unwrap();
    let a = workers::register(&db, WorkerKind::Train, "a", &json!({}))
        .await
        .unwrap();
    let b = workers::register(&db, WorkerKind::Train, "b", &json!({}))
        .await
        .unwrap();
    let c = workers::register(&db, WorkerKind::Train, "c", &json!({}))
        .await
        .unwrap();
    assert_eq!(workers::by_id(&db, a.id).await.unwrap(), Some(a.clone()));

    // Creating the train job made one ADVISE and `train_slots` (2) TRAIN leases per sub job.
    let ttl = Duration::from_millis(300);
    let first = workers::claim(&db, LeaseKind::Train, a.id, ttl)
        .await
        .unwrap()
        .unwrap();
    let second = workers::claim(&db, LeaseKind::Train, b.id, ttl)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.sub_train_job_id, Some(f.sub.id));
    assert_ne!(first.slot, second.slot);
    assert!(
        workers::claim(&db, LeaseKind::Train, c.id, ttl)
            .await
            .unwrap()
            .is_none(),
        "held leases are not claimable"
    );
    let advise = workers::claim(&db, LeaseKind::Advise, c.id, ttl)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(advise.sub_train_job_id, Some(f.sub.id));

    assert!(
        workers::heartbeat(&db, a.id, Duration::from_secs(60))
            .await
            .unwrap()
    );
    assert!(
        workers::heartbeat(&db, b.id, Duration::from_secs(60))
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        workers::claim(&db, LeaseKind::Train, c.id, ttl)
            .await
            .unwrap()
            .is_none(),
        "heartbeats extended the leases"
    );

    // a is running a trial when it stops renewing its lease (it died).
    let orphan = trials::insert_running(
        &db,
        f.sub.id,
        f.model.id,
        Some(a.id),
        None,
        &Proposal::new(1, Knobs::default()),
    )
    .await
    .unwrap()
    .expect("a live sub job");
    assert!(
        workers::heartbeat(&db, a.id, Duration::from_millis(1))
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        workers::claim(&db, LeaseKind::Train, c.id, ttl)
            .await
            .unwrap()
            .is_none(),
        "an expired lease is not claimable before its dead holder's work is cleaned up"
    );
    assert_eq!(
        trials::by_id(&db, orphan.id).await.unwrap().unwrap().status,
        TrialStatus::Running
    );
    let reclaimed: Vec<_> = workers::reclaim_expired(&db)
        .await
        .unwrap()
        .into_iter()
        .filter(|(l, _)| l.kind == LeaseKind::Train)
        .map(|(l, lost)| (l.id, lost))
        .collect();
    assert_eq!(
        reclaimed,
        vec![(first.id, 1)],
        "of the TRAIN leases, only a's expired, and its one trial was cleaned up"
    );
    assert_eq!(
        trials::by_id(&db, orphan.id).await.unwrap().unwrap().status,
        TrialStatus::Errored,
        "the dead holder's trial is ERRORED before its lease is free"
    );
    let taken = workers::claim(&db, LeaseKind::Train, c.id, ttl)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.id, first.id);
    assert!(
        !workers::release(&db, taken.id, a.id).await.unwrap(),
        "only the holder releases"
    );
    assert!(workers::release(&db, taken.id, c.id).await.unwrap());
    assert!(workers::delete_lease(&db, taken.id, None).await.unwrap());
    assert!(
        workers::claim(&db, LeaseKind::Train, c.id, ttl)
            .await
            .unwrap()
            .is_none(),
        "a deleted slot is gone"
    );

    workers::deregister(&db, b.id).await.unwrap();
    assert!(
        !workers::heartbeat(&db, b.id, ttl).await.unwrap(),
        "a deregistered worker must re-register"
    );
    let again = workers::claim(&db, LeaseKind::Train, c.id, ttl)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        again.id, second.id,
        "a deregistered worker's leases are free at once"
    );
    assert_eq!(
        workers::list_silent(&db, Duration::from_millis(10))
            .await
            .unwrap()
            .len(),
        2
    );
    let subject = workers::LeaseSubject::SubTrainJob(LeaseKind::Train, f.sub.id);
    // Slot 0 was deleted above; slot 1 still exists.
    let err = workers::create_leases(&db, subject, 2).await.unwrap_err();
    assert!(
        matches!(err, DbError::Duplicate { .. }),
        "one row per slot: {err:?}"
    );
    db::check(&f.ctx.pool).await.unwrap();
}

#[tokio::test]
async fn an_inference_job_is_started_while_a_trial_has_no_ready_replica_and_running_again_after() {
    let f = fixture().await;
    let (job, _) = inference_job_serving_one_trial(&f, 1).await;
    let client = f.ctx.pool.get().await.unwrap();
    let status = |client| async move {
        inference_jobs::by_id(client, job.id)
            .await
            .unwrap()
            .unwrap()
            .status
    };
    let first = workers::register(&client, WorkerKind::Inference, "first", &json!({}))
        .await
        .unwrap();
    let ttl = Duration::from_secs(60);
    let lease = workers::claim(&client, LeaseKind::Serve, first.id, ttl)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        inference_jobs::roll_up(&client, job.id).await.unwrap(),
        None
    );
    assert!(
        workers::set_ready(&client, lease.id, first.id, true)
            .await
            .unwrap()
    );
    assert_eq!(
        inference_jobs::roll_up(&client, job.id).await.unwrap(),
        Some(JobStatus::Running)
    );
    assert_eq!(
        inference_jobs::roll_up(&client, job.id).await.unwrap(),
        None
    );

    // The worker dies: its lease expires (a heartbeat that cut it short stands in for silence).
    workers::heartbeat(&client, first.id, Duration::from_millis(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        inference_jobs::roll_up(&client, job.id).await.unwrap(),
        Some(JobStatus::Started)
    );
    assert_eq!(status(&client).await, JobStatus::Started);

    assert!(workers::release(&client, lease.id, first.id).await.unwrap());
    let second = workers::register(&client, WorkerKind::Inference, "second", &json!({}))
        .await
        .unwrap();
    let taken = workers::claim(&client, LeaseKind::Serve, second.id, ttl)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.id, lease.id);
    assert!(
        workers::set_ready(&client, taken.id, second.id, true)
            .await
            .unwrap()
    );
    assert_eq!(
        inference_jobs::roll_up(&client, job.id).await.unwrap(),
        Some(JobStatus::Running)
    );
    assert_eq!(status(&client).await, JobStatus::Running);
}

/// A lease claimed but never served (its hosting failed midway: Redis or Postgres went away
/// between the claim and the insert) is given back by the next reconcile, instead of being renewed
/// by every heartbeat and served by nobody; what is served stays held.
#[tokio::test]
async fn reconcile_gives_back_a_lease_claimed_but_never_served() {
    let f = fixture().await;
    let db = f.ctx.pool.get().await.unwrap();
    let advisor = workers::register(&db, WorkerKind::Advisor, "a", &json!({}))
        .await
        .unwrap();
    let ttl = Duration::from_secs(60);
    let stray = workers::claim(&db, LeaseKind::Advise, advisor.id, ttl)
        .await
        .unwrap()
        .expect("the job has an ADVISE lease");
    let gauge = prometheus::IntGauge::new("held", "held").unwrap();
    let mut held: duma_common::worker::LeasedStreams<()> =
        duma_common::worker::LeasedStreams::new(gauge);

    let lost = held.reconcile(&f.ctx.pool, advisor.id).await.unwrap();
    assert!(lost.is_empty());
    assert!(
        workers::leases_held(&db, advisor.id)
            .await
            .unwrap()
            .is_empty(),
        "the stray lease was given back"
    );
    let again = workers::claim(&db, LeaseKind::Advise, advisor.id, ttl)
        .await
        .unwrap()
        .expect("claimable again");
    assert_eq!(again.id, stray.id);
    held.insert(again.id, "stream".into(), ());
    held.reconcile(&f.ctx.pool, advisor.id).await.unwrap();
    assert_eq!(
        workers::leases_held(&db, advisor.id).await.unwrap().len(),
        1,
        "a served lease stays held"
    );
}

/// A port goes to one live job at a time; a stopped job's port is free again but comes after
/// ports never used (and after ports released earlier), so a client still calling an old port
/// rarely reaches a new job.
#[tokio::test]
async fn inference_job_ports_go_to_one_live_job_and_the_longest_released_comes_first() {
    let f = fixture().await;
    let (_, served) = inference_job_serving_one_trial(&f, 1).await;
    let mut client = f.ctx.pool.get().await.unwrap();
    // The fixture's own job has no port; stop it so the train job can be served again.
    let first = inference_jobs::live_for_train_job(&client, f.job.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.predictor_port, None);
    inference_jobs::set_status(&client, first.id, JobStatus::Stopped, None)
        .await
        .unwrap();
    let ports = 40000..=40001;
    let serve = async |client: &mut deadpool_postgres::Object| {
        let tx = client.transaction().await.unwrap();
        let port = inference_jobs::free_port(&tx, ports.clone()).await.unwrap();
        let job =
            inference_jobs::create(&tx, f.owner.id, f.job.id, &json!({}), &[served], port, None)
                .await
                .unwrap();
        tx.commit().await.unwrap();
        job
    };
    let a = serve(&mut client).await;
    assert_eq!(a.predictor_port, Some(40000));
    assert_eq!(
        inference_jobs::live_at_port(&client, 40000).await.unwrap(),
        Some(a.id)
    );
    inference_jobs::set_status(&client, a.id, JobStatus::Stopped, None)
        .await
        .unwrap();
    assert_eq!(
        inference_jobs::live_at_port(&client, 40000).await.unwrap(),
        None
    );
    // 40000 is free again, but 40001 was never used.
    let b = serve(&mut client).await;
    assert_eq!(b.predictor_port, Some(40001));
    let tx = client.transaction().await.unwrap();
    assert_eq!(
        inference_jobs::free_port(&tx, 40001..=40001).await.unwrap(),
        None
    );
    assert_eq!(
        inference_jobs::free_port(&tx, ports.clone()).await.unwrap(),
        Some(40000)
    );
    drop(tx);
    inference_jobs::set_status(&client, b.id, JobStatus::Stopped, None)
        .await
        .unwrap();
    // Both released: 40000 longest ago.
    let c = serve(&mut client).await;
    assert_eq!(c.predictor_port, Some(40000));
}

/// A proposal that loses the race with a stop adds no trial: nothing RUNNING under a stopped job.
#[tokio::test]
async fn no_trial_starts_under_a_stopped_job() {
    let f = fixture().await;
    let mut db = f.ctx.pool.get().await.unwrap();
    let tx = db.transaction().await.unwrap();
    train_jobs::stop(&tx, f.job.id).await.unwrap();
    tx.commit().await.unwrap();
    let added = trials::insert_running(
        &db,
        f.sub.id,
        f.model.id,
        None,
        None,
        &Proposal::new(1, Knobs::new()),
    )
    .await
    .unwrap();
    assert!(added.is_none(), "{added:?}");
}

#[tokio::test]
async fn work_needing_gpus_is_claimed_only_by_a_worker_with_that_many_free() {
    let f = fixture().await;
    let mut db = f.ctx.pool.get().await.unwrap();
    let train = dataset(&db, f.owner.id, "TABULAR_CLASSIFICATION").await;
    let mut gpu_job = new_train_job(f.owner.id, &train, vec![f.model.id]);
    gpu_job.app = "on-gpus".into();
    gpu_job.budget.gpu_count = 2;
    let tx = db.transaction().await.unwrap();
    let (_, gpu_subs) = train_jobs::create(&tx, &gpu_job).await.unwrap();
    tx.commit().await.unwrap();
    // A built-in template runs in the worker, on CPU: its trials need no GPU whatever the budget.
    let mut native = new_model(f.owner.id, "native", AccessRight::Private);
    native.template_kind = TemplateKind::Native;
    native.source_path = None;
    let native = models::insert(&db, &native).await.unwrap();
    let mut native_job = new_train_job(f.owner.id, &train, vec![native.id]);
    native_job.app = "built-in".into();
    native_job.budget.gpu_count = 2;
    let tx = db.transaction().await.unwrap();
    let (native_job, native_subs) = train_jobs::create(&tx, &native_job).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        workers::train_job_gpus(&db, native_job.id).await.unwrap(),
        0
    );
    let one_gpu = workers::register(&db, WorkerKind::Train, "a", &json!({"gpus": {"count": 1}}))
        .await
        .unwrap();
    let four_gpus = workers::register(&db, WorkerKind::Train, "b", &json!({"gpus": {"count": 4}}))
        .await
        .unwrap();
    let alive = Duration::from_secs(60);
    assert_eq!(
        workers::most_gpus(&db, WorkerKind::Train, alive)
            .await
            .unwrap(),
        4
    );
    assert_eq!(
        workers::most_gpus(&db, WorkerKind::Inference, alive)
            .await
            .unwrap(),
        0,
        "no inference worker lives"
    );

    // With one GPU free, only the CPU job's and the built-in job's two slots each can be had.
    let ttl = Duration::from_secs(60);
    for _ in 0..4 {
        let lease = workers::claim_train(&mut db, one_gpu.id, ttl, 100, 1)
            .await
            .unwrap()
            .expect("a CPU job's slot");
        assert!(
            [Some(f.sub.id), Some(native_subs[0].id)].contains(&lease.sub_train_job_id),
            "{lease:?}"
        );
        assert_eq!(workers::gpus_needed(&db, &lease).await.unwrap(), 0);
    }
    assert!(
        workers::claim_train(&mut db, one_gpu.id, ttl, 100, 1)
            .await
            .unwrap()
            .is_none(),
        "a job needing 2 GPUs was claimed with 1 free"
    );
    let lease = workers::claim_train(&mut db, four_gpus.id, ttl, 100, 2)
        .await
        .unwrap()
        .expect("2 free GPUs take the GPU job");
    assert_eq!(lease.sub_train_job_id, Some(gpu_subs[0].id));
    assert_eq!(workers::gpus_needed(&db, &lease).await.unwrap(), 2);
    assert_eq!(
        workers::train_job_gpus(&db, lease_job(&db, &lease).await)
            .await
            .unwrap(),
        2
    );

    // A served model asking for a GPU waits for a worker with one free.
    inference_job_serving_one_trial_on(&f, 1, 1).await;
    let server = workers::register(&db, WorkerKind::Inference, "c", &json!({}))
        .await
        .unwrap();
    let levels = ["development".to_owned()];
    assert!(
        workers::claim_serving(&db, server.id, ttl, &levels, 0)
            .await
            .unwrap()
            .is_none()
    );
    let serve = workers::claim_serving(&db, server.id, ttl, &levels, 1)
        .await
        .unwrap()
        .expect("one free GPU serves it");
    assert_eq!(workers::gpus_needed(&db, &serve).await.unwrap(), 1);
    assert_eq!(
        workers::inference_job_gpus(&db, serve.inference_job_id.unwrap())
            .await
            .unwrap(),
        1
    );
}

async fn lease_job(db: &impl GenericClient, lease: &workers::Lease) -> duma_domain::TrainJobId {
    train_jobs::sub_job_by_id(db, lease.sub_train_job_id.unwrap())
        .await
        .unwrap()
        .unwrap()
        .train_job_id
}
