//! Each service's own account in PostgreSQL and Redis, holding only what that service needs
//! (docs/security.md, "Service accounts").
//!
//! The database roles and their grants are created by the migrations (`V5__service_roles.sql`);
//! `duma-admin migrate` gives each role the password it is configured with
//! (`database.role_passwords`). The Redis ACL rules are written here, once, and handed to
//! redis-server by `duma up` (an ACL file), the compose file (`--user` arguments, checked against
//! these by a test) and the test kit (`ACL SETUSER`).

/// A Duma service, as PostgreSQL and Redis know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Account {
    Admin,
    Predictor,
    AdvisorWorker,
    TrainWorker,
    InferenceWorker,
}

impl Account {
    pub const ALL: [Account; 5] = [
        Account::Admin,
        Account::Predictor,
        Account::AdvisorWorker,
        Account::TrainWorker,
        Account::InferenceWorker,
    ];

    /// The service's name: `admin`, `predictor`, `advisor-worker`, `train-worker`,
    /// `inference-worker`.
    pub fn name(self) -> &'static str {
        match self {
            Account::Admin => "admin",
            Account::Predictor => "predictor",
            Account::AdvisorWorker => "advisor-worker",
            Account::TrainWorker => "train-worker",
            Account::InferenceWorker => "inference-worker",
        }
    }

    /// Its PostgreSQL role (created, without a password, by the migrations).
    pub fn database_role(self) -> &'static str {
        match self {
            Account::Admin => "duma_admin",
            Account::Predictor => "duma_predictor",
            Account::AdvisorWorker => "duma_advisor_worker",
            Account::TrainWorker => "duma_train_worker",
            Account::InferenceWorker => "duma_inference_worker",
        }
    }

    /// Its Redis ACL user.
    pub fn redis_user(self) -> String {
        format!("duma-{}", self.name())
    }

    /// Its Redis ACL rules for keys and channels under `prefix` (what follows
    /// `user <name> on >password`): which keys, channels and commands, nothing else.
    ///
    /// - the admin publishes job events, deletes orphaned request streams and hands the requests
    ///   a dead serving replica had read to the live ones (one script: `rpc::requeue_orphans`);
    /// - the predictor and the train worker are RPC clients (of serving replicas and of advisors):
    ///   they append requests and pop their own replies;
    /// - the advisor and inference workers are RPC servers: they read requests as a consumer
    ///   group and push replies;
    /// - every service but the admin follows the job events.
    pub fn redis_rules(self, prefix: &str) -> Vec<String> {
        let streams = |target: &str| format!("~{prefix}stream:{target}");
        let replies = format!("~{prefix}replies:*");
        let (keys, commands): (Vec<String>, Vec<&str>) = match self {
            Account::Admin => (
                vec![streams("*")],
                [&["publish", "scan", "unlink"], REQUEUE].concat(),
            ),
            Account::Predictor => (vec![streams("serve:*"), replies], RPC_CLIENT.to_vec()),
            Account::TrainWorker => (vec![streams("advisor:*"), replies], RPC_CLIENT.to_vec()),
            Account::AdvisorWorker => (vec![streams("advisor:*"), replies], RPC_SERVER.to_vec()),
            // It also announces the inference jobs that start running or fail to load.
            Account::InferenceWorker => (
                vec![streams("serve:*"), replies],
                [RPC_SERVER, &["publish"]].concat(),
            ),
        };
        let mut rules = vec!["resetkeys".to_owned()];
        rules.extend(keys);
        rules.push("resetchannels".into());
        rules.push(format!("&{prefix}events"));
        rules.push("-@all".into());
        rules.push("+ping".into());
        if self != Account::Admin {
            rules.extend(["+subscribe".into(), "+unsubscribe".into()]);
        }
        rules.extend(commands.iter().map(|command| format!("+{command}")));
        rules
    }
}

/// What the admin's hand-over of a dead replica's requests runs (a script, and what it calls).
const REQUEUE: &[&str] = &[
    "eval",
    "xpending",
    "xrange",
    "xadd",
    "xack",
    "xgroup|delconsumer",
];

/// What an RPC client sends (`duma_common::redis::rpc::client`).
const RPC_CLIENT: &[&str] = &["xadd", "blmpop"];

/// What an RPC server sends (`duma_common::redis::rpc::server`).
const RPC_SERVER: &[&str] = &[
    "xgroup|create",
    "xreadgroup",
    "xautoclaim",
    "xack",
    "xdel",
    "xlen",
    "xpending",
    "rpush",
    "pexpire",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_set_starts_from_nothing_and_stays_under_the_prefix() {
        for account in Account::ALL {
            let rules = account.redis_rules("p:");
            assert_eq!(rules[0], "resetkeys", "{account:?}");
            assert!(rules.contains(&"-@all".to_owned()), "{account:?}");
            for rule in &rules {
                if let Some(pattern) = rule.strip_prefix('~').or(rule.strip_prefix('&')) {
                    assert!(pattern.starts_with("p:"), "{account:?}: {rule}");
                }
            }
        }
    }

    /// deploy/docker-compose.yml writes the rules out for redis-server: they must be these.
    #[test]
    fn the_compose_file_gives_redis_the_same_rules() {
        let compose = include_str!("../../deploy/docker-compose.yml");
        let redis = &compose[compose.find("\n  redis:\n").expect("a redis service")..];
        let list = &redis[redis.find("command: [").expect("a flow-list command") + 10..];
        let list = &list[..list.find("\n      ]").expect("the list's end")];
        let tokens: Vec<&str> = list
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .flat_map(|line| line.split(','))
            .map(|token| token.trim().trim_matches('"'))
            .filter(|token| !token.is_empty())
            .collect();
        let mut users = tokens.split(|token| *token == "--user").skip(1);
        for account in Account::ALL {
            let user = users
                .next()
                .unwrap_or_else(|| panic!("no --user for {account:?}"));
            assert_eq!(user[0], account.redis_user());
            assert_eq!(user[1], "on");
            assert!(
                user[2].starts_with(">${"),
                "{account:?}: a password from .env"
            );
            assert_eq!(user[3..], account.redis_rules("duma:")[..], "{account:?}");
        }
        assert!(users.next().is_none(), "a --user for no service");
    }
}
