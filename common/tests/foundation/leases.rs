//! The lease state machine under many interleavings of claims, trials, heartbeats, deaths, clean
//! stops and reclaims, against real PostgreSQL. Time is moved by expiring a dead worker's
//! leases at once (what `lease_ttl` later does), so every interleaving runs in milliseconds.

use std::collections::HashMap;
use std::time::Duration;

use duma_common::db::{GenericClient, trials, workers};
use duma_domain::{
    JobStatus, Knobs, LeaseId, LeaseKind, Proposal, TrialId, TrialStatus, WorkerId, WorkerKind,
};
use serde_json::json;

use crate::repositories::fixture;

const SEEDS: u64 = 64;
const STEPS: usize = 100;
const TTL: Duration = Duration::from_secs(60);

/// A tiny deterministic generator: interleavings are reproducible from their seed.
struct Xorshift(u64);

impl Xorshift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

#[derive(Default)]
struct Worker {
    alive: bool,
    lease: Option<LeaseId>,
    trial: Option<TrialId>,
}

/// Invariants that hold after every step:
/// - a RUNNING trial's worker still holds a lease (alive, or dead but not reclaimed yet): a lease
///   is never freed while its holder's trial looks RUNNING;
/// - after a reclaim, no RUNNING trial belongs to a dead worker.
async fn check(
    db: &impl GenericClient,
    sub: duma_domain::SubTrainJobId,
    fleet: &HashMap<WorkerId, Worker>,
    reclaimed: bool,
    context: &str,
) {
    let holders = workers::holders_of_sub_job(db, sub).await.unwrap();
    for trial in trials::list_by_sub_job(db, sub).await.unwrap() {
        if trial.status != TrialStatus::Running {
            continue;
        }
        let worker = trial.worker_id.unwrap();
        assert!(
            holders.contains(&worker),
            "{context}: trial {} RUNNING but its worker holds no lease",
            trial.no
        );
        if reclaimed {
            assert!(
                fleet[&worker].alive,
                "{context}: trial {} of a dead worker still RUNNING after a reclaim",
                trial.no
            );
        }
    }
}

#[tokio::test]
async fn no_interleaving_leaves_a_trial_running_without_a_live_holder_after_a_reclaim() {
    let f = fixture().await;
    let mut db = f.ctx.pool.get().await.unwrap();
    let mut next_no = 1;
    for seed in 1..=SEEDS {
        let mut rng = Xorshift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut fleet: HashMap<WorkerId, Worker> = HashMap::new();
        for step in 0..STEPS {
            let ids: Vec<WorkerId> = fleet.keys().copied().collect();
            let pick = (!ids.is_empty()).then(|| ids[rng.below(ids.len())]);
            let op = rng.below(8);
            let context = format!("seed {seed} step {step} op {op}");
            let mut reclaimed = false;
            match (op, pick) {
                // A worker starts (or restarts under a new id, as after a crash).
                (0, _) | (_, None) => {
                    let worker = workers::register(&db, WorkerKind::Train, "w", &json!({}))
                        .await
                        .unwrap();
                    let state = Worker {
                        alive: true,
                        ..Worker::default()
                    };
                    fleet.insert(worker.id, state);
                }
                (1, Some(id)) if fleet[&id].alive && fleet[&id].lease.is_none() => {
                    let dead_held: Vec<LeaseId> = fleet
                        .values()
                        .filter(|w| !w.alive)
                        .filter_map(|w| w.lease)
                        .collect();
                    if let Some(lease) = workers::claim(&db, LeaseKind::Train, id, TTL)
                        .await
                        .unwrap()
                    {
                        assert!(
                            !dead_held.contains(&lease.id),
                            "{context}: claimed a dead worker's lease before its cleanup"
                        );
                        fleet.get_mut(&id).unwrap().lease = Some(lease.id);
                    }
                }
                (2, Some(id))
                    if fleet[&id].alive
                        && fleet[&id].lease.is_some()
                        && fleet[&id].trial.is_none() =>
                {
                    let proposal = Proposal::new(next_no, Knobs::default());
                    next_no += 1;
                    let trial = trials::insert_running(
                        &db,
                        f.sub.id,
                        f.model.id,
                        Some(id),
                        None,
                        &proposal,
                    )
                    .await
                    .unwrap()
                    .expect("a live sub job");
                    fleet.get_mut(&id).unwrap().trial = Some(trial.id);
                }
                (3, Some(id)) if fleet[&id].alive => {
                    if let Some(trial) = fleet.get_mut(&id).unwrap().trial.take() {
                        trials::complete(&db, trial, Some(0.5), None).await.unwrap();
                    }
                }
                (4, Some(id)) if fleet[&id].alive => {
                    assert!(workers::heartbeat(&db, id, TTL).await.unwrap());
                }
                // SIGKILL: nothing is renewed any more; its leases are past expiry.
                (5, Some(id)) if fleet[&id].alive => {
                    fleet.get_mut(&id).unwrap().alive = false;
                    db.execute(
                        "UPDATE work_leases SET expires_at = now() - interval '1 second' \
                         WHERE worker_id = $1",
                        &[&id],
                    )
                    .await
                    .unwrap();
                }
                // A clean stop.
                (6, Some(id)) if fleet[&id].alive => {
                    workers::deregister(&db, id).await.unwrap();
                    fleet.remove(&id);
                }
                (7, _) => {
                    let tx = db.transaction().await.unwrap();
                    for (lease, _) in workers::reclaim_expired(&tx).await.unwrap() {
                        let holder = fleet.get_mut(&lease.worker_id.unwrap()).unwrap();
                        assert!(
                            !holder.alive,
                            "{context}: a live worker's lease was reclaimed"
                        );
                        holder.lease = None;
                        holder.trial = None;
                    }
                    tx.commit().await.unwrap();
                    reclaimed = true;
                }
                _ => continue,
            }
            check(&db, f.sub.id, &fleet, reclaimed, &context).await;
        }
        // Between interleavings: every lease free again, no trial left RUNNING.
        for id in fleet.keys() {
            workers::deregister(&db, *id).await.unwrap();
        }
        let sub = duma_common::db::train_jobs::sub_job_by_id(&db, f.sub.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(sub.status, JobStatus::Started, "the sub job is untouched");
    }
}
