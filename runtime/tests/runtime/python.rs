//! Python templates through the real runner (`python -m duma.runner`) in a virtualenv that the
//! cache builds once (numpy) under `target/`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use duma_common::config::SandboxSettings;
use duma_domain::{KnobValue, Knobs, TrialLogKind};
use duma_runtime::python::{KillSwitch, PythonEnv, PythonTemplate, VenvCache};
use duma_runtime::sandbox::Sandbox;
use duma_runtime::{Model, TemplateError, TrialLogger};
use serde_json::json;

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

const INTERPRETER: &str = "/usr/bin/python3";

fn venvs_root() -> PathBuf {
    repository().join("target/duma-test-cache/venvs")
}

/// The sandbox of the default settings, as a worker makes it.
fn sandbox() -> Arc<Sandbox> {
    static SANDBOX: OnceLock<Arc<Sandbox>> = OnceLock::new();
    SANDBOX
        .get_or_init(|| {
            Arc::new(Sandbox::new(
                &SandboxSettings::default(),
                Path::new(INTERPRETER),
                &venvs_root(),
                &repository().join("python"),
            ))
        })
        .clone()
}

fn venv_cache() -> VenvCache {
    VenvCache::new(&venvs_root(), Path::new(INTERPRETER), sandbox())
}

/// The base environment (Rafiki's worker packages), built once per test cache.
fn env() -> PythonEnv {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    let python = PYTHON.get_or_init(|| {
        venv_cache()
            .interpreter(&Default::default())
            .expect("a virtualenv with numpy (needs PyPI or a warm cache)")
    });
    PythonEnv {
        python: python.clone(),
        sdk_path: repository().join("python"),
        work_root: std::env::temp_dir().join("duma-runtime-tests"),
        sandbox: sandbox(),
        devices: Default::default(),
    }
}

fn template(file: &str, class: &str) -> PythonTemplate {
    PythonTemplate {
        source: repository().join("python/tests/templates").join(file),
        class_name: class.into(),
        env: env(),
    }
}

fn dataset(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    let csv = crate::support::data::two_class_csv(60, 0.1);
    let path = dir.path().join(name);
    std::fs::write(&path, csv).unwrap();
    path
}

fn knobs() -> Knobs {
    serde_json::from_value(json!({
        "temperature": 1.0, "epochs": 2, "metric": "euclidean", "max_rows": 10000, "quick_eval": false,
    }))
    .unwrap()
}

#[test]
fn a_rafiki_template_trains_evaluates_saves_loads_and_predicts() {
    let template = template("rafiki_centroid.py", "RafikiCentroid");
    let kill = KillSwitch::new();
    let config = template.knob_config(&kill).unwrap();
    assert_eq!(config.0.len(), 5);
    let dir = tempfile::tempdir().unwrap();
    let (train, val) = (dataset(&dir, "train.csv"), dataset(&dir, "val.csv"));

    let mut model = template.build(&knobs(), &kill).unwrap();
    let mut log = TrialLogger::new();
    model.train(&train, &Default::default(), &mut log).unwrap();
    let score = model.evaluate(&val, &mut log).unwrap();
    assert!(score > 0.9, "{score}");
    let kinds: Vec<TrialLogKind> = log.records().iter().map(|r| r.kind).collect();
    assert!(
        kinds.contains(&TrialLogKind::Plot) && kinds.contains(&TrialLogKind::Metrics),
        "{kinds:?}"
    );

    let params = model.dump_parameters().unwrap();
    assert!(!params.is_empty());
    let queries = vec![
        json!({"f1": -2.0, "f2": -2.0}),
        json!({"f1": 2.0, "f2": 2.0}),
    ];
    let before = model.predict(&queries).unwrap();
    let loaded = template.load(&knobs(), &params, &kill).unwrap();
    assert_eq!(
        loaded.predict(&queries).unwrap(),
        before,
        "same predictions after a save/load round trip"
    );
}

/// A template that imports pandas, scikit-learn and Pillow without declaring them trains, saves,
/// loads and predicts; the queries reach its DataFrame with their keys in the order sent.
#[test]
fn the_base_environment_has_rafikis_worker_packages_and_key_order_holds() {
    let template = template("base_env.py", "BaseEnvTree");
    let kill = KillSwitch::new();
    let dir = tempfile::tempdir().unwrap();
    let (train, val) = (dataset(&dir, "train.csv"), dataset(&dir, "val.csv"));
    let knobs: Knobs = [("max_depth".to_owned(), KnobValue::Int(2))].into();
    let mut model = template.build(&knobs, &kill).unwrap();
    let mut log = TrialLogger::new();
    model.train(&train, &Default::default(), &mut log).unwrap();
    let score = model.evaluate(&val, &mut log).unwrap();
    assert!(score > 0.9, "{score}");
    let params = model.dump_parameters().unwrap();
    let loaded = template.load(&knobs, &params, &kill).unwrap();
    let queries = vec![
        json!({"f1": -2.0, "f2": -2.0}),
        json!({"f1": 2.0, "f2": 2.0}),
    ];
    assert_eq!(loaded.predict(&queries).unwrap(), vec![json!(0), json!(1)]);
    // Keys in another order than training's are the caller's mistake, and scikit-learn says so.
    let swapped: Vec<serde_json::Value> =
        vec![serde_json::from_str(r#"{"f2": -2.0, "f1": -2.0}"#).unwrap()];
    assert!(loaded.predict(&swapped).is_err());
}

#[test]
fn knobs_outside_the_space_are_refused() {
    let template = template("rafiki_centroid.py", "RafikiCentroid");
    let mut bad = knobs();
    bad.insert("epochs".into(), KnobValue::Int(99));
    assert!(matches!(
        template.build(&bad, &KillSwitch::new()),
        Err(TemplateError::InvalidKnobs(_))
    ));
}

#[test]
fn a_class_without_methods_is_reported_with_the_python_error() {
    let err = template("broken_models.py", "Empty")
        .knob_config(&KillSwitch::new())
        .unwrap_err();
    let TemplateError::Python { kind, message, .. } = &err else {
        panic!("{err}")
    };
    assert!(!kind.is_empty() && !message.is_empty(), "{err}");
}

#[test]
fn a_hanging_template_is_killed_by_its_switch() {
    let dir = tempfile::tempdir().unwrap();
    let template = template("hang.py", "Hang");
    let kill = KillSwitch::new();
    let mut model = template
        .build(&[("k".to_owned(), KnobValue::Int(1))].into(), &kill)
        .unwrap();
    let firing = kill.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        firing.fire();
    });
    let started = Instant::now();
    let err = model
        .train(
            &dataset(&dir, "d.csv"),
            &Default::default(),
            &mut TrialLogger::new(),
        )
        .unwrap_err();
    assert!(matches!(err, TemplateError::Runner { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// A model of a test template whose one knob is `k`, trained on a small dataset without
/// train args.
fn trained_with_one_knob(file: &str, class: &str) -> Box<dyn Model> {
    let dir = tempfile::tempdir().unwrap();
    let mut model = template(file, class)
        .build(
            &[("k".to_owned(), KnobValue::Int(1))].into(),
            &KillSwitch::new(),
        )
        .unwrap();
    model
        .train(
            &dataset(&dir, "d.csv"),
            &Default::default(),
            &mut TrialLogger::new(),
        )
        .unwrap();
    model
}

/// A served model's call waits for its runner until the deadline it is given, however long the
/// model takes within it; past it the runner is killed and the model is `Hung`.
#[test]
fn a_prediction_waits_until_its_deadline_and_not_past_it() {
    let model = trained_with_one_knob("predict_faults.py", "PredictFaults");
    let soon = |millis| Instant::now() + Duration::from_millis(millis);
    // 1.5 s of work, within a 5 s deadline.
    let answers = model
        .predict_json(&[br#"[3, "slow"]"#], soon(5000))
        .unwrap();
    assert_eq!(answers, vec![vec![json!(6), json!(0)]]);
    let started = Instant::now();
    let error = model
        .predict_json(&[br#"["hang"]"#], soon(300))
        .unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(error, TemplateError::Hung { .. }), "{error}");
    assert!(
        error.to_string().contains("did not answer within"),
        "{error}"
    );
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // Its runner is gone: the model must be loaded again.
    let error = model.predict_json(&[b"[1]"], soon(5000)).unwrap_err();
    assert!(matches!(error, TemplateError::Runner { .. }), "{error}");
}

#[test]
fn killing_a_trial_also_kills_the_processes_its_template_started() {
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("duma-test-child-{}", std::process::id());
    let template = template("hang_with_child.py", "HangWithChild");
    let kill = KillSwitch::new();
    let mut model = template
        .build(&[("k".to_owned(), KnobValue::Int(1))].into(), &kill)
        .unwrap();
    let firing = kill.clone();
    let watched = marker.clone();
    let child = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut found = None;
        while found.is_none() && Instant::now() < deadline {
            found = processes_with(&watched).into_iter().next();
            std::thread::sleep(Duration::from_millis(20));
        }
        firing.fire();
        found
    });
    let train_args = serde_json::Map::from_iter([("marker".to_owned(), json!(marker))]);
    model
        .train(
            &dataset(&dir, "d.csv"),
            &train_args,
            &mut TrialLogger::new(),
        )
        .unwrap_err();
    let pid = child
        .join()
        .unwrap()
        .expect("the template's child was seen running");
    let deadline = Instant::now() + Duration::from_secs(5);
    while is_alive(&pid) {
        assert!(
            Instant::now() < deadline,
            "the template's child {pid} outlived the killed trial"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The host pids of processes whose command line holds `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|pid| pid.chars().all(|c| c.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(marker))
        })
        .collect()
}

/// A process that exists and is not a zombie waiting to be reaped.
fn is_alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

#[test]
fn the_runner_sees_no_platform_secrets() {
    // Whatever the worker's environment holds, the child sees only the variables the runner sets.
    let model = trained_with_one_knob("env_probe.py", "EnvProbe");
    let seen = model.predict(&[json!(null)]).unwrap();
    let names: Vec<&str> = seen[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        names.iter().all(|n| [
            "PATH",
            "HOME",
            "LANG",
            "PYTHONUNBUFFERED",
            "PYTHONDONTWRITEBYTECODE",
            "PYTHONPATH",
            "TMPDIR",
            "PWD",
            "LC_CTYPE"
        ]
        .contains(n)),
        "{names:?}"
    );
}

/// A declared dependency set installs only what it declares; the base packages come from the
/// base environment, layered under it, not installed again.
#[test]
fn a_dependency_set_is_layered_on_the_base_environment() {
    env(); // the base exists
    let cache = venv_cache();
    let deps = [("six".to_owned(), "1.16.0".to_owned())].into();
    let started = Instant::now();
    let python = cache.interpreter(&deps).unwrap();
    let output = std::process::Command::new(&python)
        .args([
            "-c",
            "import six, pandas, sklearn; print(six.__file__); print(pandas.__file__)",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let mut files = stdout.lines();
    let (six, pandas) = (files.next().unwrap(), files.next().unwrap());
    let own = python
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .canonicalize()
        .unwrap();
    let inside = |file: &str| {
        PathBuf::from(file)
            .canonicalize()
            .unwrap()
            .starts_with(&own)
    };
    assert!(inside(six), "{six} outside {own:?}");
    assert!(!inside(pandas), "pandas installed again: {pandas}");
    // Built once: asking again is immediate.
    let again = Instant::now();
    assert_eq!(cache.interpreter(&deps).unwrap(), python);
    assert!(
        again.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

/// A template like `template`, run in a sandbox with small limits.
fn limited(file: &str, class: &str, settings: SandboxSettings) -> PythonTemplate {
    let mut template = template(file, class);
    template.env.sandbox = Arc::new(Sandbox::new(
        &settings,
        Path::new(INTERPRETER),
        &venvs_root(),
        &repository().join("python"),
    ));
    template
}

/// Trains the hostile probe in `mode` (a limit it hits without catching anything): the error.
fn hit(mode: &str, settings: SandboxSettings) -> String {
    let dir = tempfile::tempdir().unwrap();
    let template = limited("hostile_probe.py", "HostileProbe", settings);
    let kill = KillSwitch::new();
    let mut model = template
        .build(&[("k".to_owned(), KnobValue::Int(1))].into(), &kill)
        .unwrap();
    let train_args = serde_json::Map::from_iter([("mode".to_owned(), json!(mode))]);
    let started = Instant::now();
    let error = model
        .train(
            &dataset(&dir, "d.csv"),
            &train_args,
            &mut TrialLogger::new(),
        )
        .unwrap_err()
        .to_string();
    assert!(started.elapsed() < Duration::from_secs(60), "{mode}");
    error
}

#[test]
fn each_limit_hit_ends_the_trial_with_the_limit_named() {
    // (Each case leaves the other limits clear of what it hits.)
    let small = |file_mib, train_cpu_seconds| SandboxSettings {
        memory_mib: 1024,
        train_cpu_seconds,
        processes: 32,
        file_mib,
        scratch_mib: 16,
        ..SandboxSettings::default()
    };
    for (mode, file_mib, cpu, named) in [
        ("memory", 8, 600, "memory limit of 1024 MiB"),
        ("processes", 8, 600, "limit of 32 processes"),
        ("scratch", 64, 600, "scratch space of 16 MiB"),
        ("file", 8, 600, "limit of 8 MiB"),
        ("cpu", 8, 3, "CPU-time limit of 3 s"),
    ] {
        let error = hit(mode, small(file_mib, cpu));
        assert!(error.contains(named), "{mode}: {error}");
    }
}

#[test]
fn a_sandboxed_template_reaches_no_host_file_socket_or_process() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret").unwrap();
    let written = dir.path().join("written-by-the-template");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let template = template("hostile_probe.py", "HostileProbe");
    let mut model = template
        .build(
            &[("k".to_owned(), KnobValue::Int(1))].into(),
            &KillSwitch::new(),
        )
        .unwrap();
    let targets = json!({
        "files": [secret, "/etc/shadow"],
        "dirs": [dir.path(), "/root", "/home"],
        "writes": [written, "/usr/lib/duma-test-was-here"],
        "tcp": [["127.0.0.1", port]],
        "max_processes": 400,
        "memory_bomb_bytes": 8_u64 << 30,
    });
    let mut log = TrialLogger::new();
    let train_args = serde_json::Map::from_iter([("targets".to_owned(), targets)]);
    model
        .train(&dataset(&dir, "d.csv"), &train_args, &mut log)
        .unwrap();
    let outcomes: Vec<String> = log
        .drain()
        .into_iter()
        .filter(|r| r.kind == TrialLogKind::Message)
        .filter_map(|r| r.payload["message"].as_str().map(str::to_owned))
        .collect();
    assert!(outcomes.len() >= 12, "{outcomes:?}");
    let leaked: Vec<&String> = outcomes
        .iter()
        .filter(|o| {
            !o.split_once(": ")
                .is_some_and(|(_, r)| r.starts_with("blocked"))
        })
        .collect();
    assert!(leaked.is_empty(), "{leaked:#?}");
    assert!(!written.exists());
}

/// The documented opt-out: unconfined, in host folders, and still a working template.
#[test]
fn with_the_sandbox_off_a_template_still_trains_and_predicts() {
    let settings = SandboxSettings {
        mode: duma_common::config::SandboxMode::Off,
        ..SandboxSettings::default()
    };
    trains_saves_loads_and_predicts(limited("rafiki_centroid.py", "RafikiCentroid", settings));
}

/// A container runtime that masks parts of the host's `/proc` (Docker) forbids the sandbox one of
/// its own: model code then runs without `/proc`, and must still train and serve.
#[test]
fn in_a_sandbox_without_proc_a_template_still_trains_and_predicts() {
    let mut template = template("rafiki_centroid.py", "RafikiCentroid");
    template.env.sandbox = Arc::new(
        Sandbox::new(
            &SandboxSettings::default(),
            Path::new(INTERPRETER),
            &venvs_root(),
            &repository().join("python"),
        )
        .without_proc(),
    );
    trains_saves_loads_and_predicts(template);
}

fn trains_saves_loads_and_predicts(template: PythonTemplate) {
    let dir = tempfile::tempdir().unwrap();
    let kill = KillSwitch::new();
    let mut model = template.build(&knobs(), &kill).unwrap();
    model
        .train(
            &dataset(&dir, "train.csv"),
            &Default::default(),
            &mut TrialLogger::new(),
        )
        .unwrap();
    let params = model.dump_parameters().unwrap();
    let loaded = template.load(&knobs(), &params, &kill).unwrap();
    let queries = [json!({"f1": 2.0, "f2": 2.0})];
    assert_eq!(
        loaded.predict(&queries).unwrap(),
        model.predict(&queries).unwrap()
    );
}

/// On a fresh host no environment has been built yet: the sandbox must not depend on one.
#[test]
fn a_sandbox_on_a_fresh_host_runs_before_any_environment_exists() {
    let fresh = tempfile::tempdir().unwrap();
    let env_root = fresh.path().join("data/envs");
    let sandbox = Sandbox::new(
        &SandboxSettings::default(),
        Path::new(INTERPRETER),
        &env_root,
        &repository().join("python"),
    );
    let folders = duma_runtime::sandbox::Folders {
        input: None,
        output: None,
        scratch: None,
        writable: Vec::new(),
        devices: Vec::new(),
    };
    let output = sandbox
        .command(
            duma_runtime::sandbox::Purpose::Serve,
            &folders,
            Path::new(INTERPRETER),
            &[],
        )
        .expect("the sandbox is available")
        .args(["-c", "print(6 * 7)"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "42");
    assert!(env_root.is_dir());
}

/// A root worker that may not mount (a container) gives each process a uid of its own all the
/// same: `setpriv` first, then bubblewrap in a user namespace of that uid. The process runs as
/// that uid with no capabilities, and what it writes to `/job/out` is that uid's.
#[test]
fn a_root_worker_that_may_not_mount_still_gives_each_process_its_own_uid() {
    use duma_runtime::sandbox::{Folders, Identity, Purpose};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let fresh = tempfile::tempdir().unwrap();
    std::fs::set_permissions(fresh.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (envs, sdk, out) = (
        fresh.path().join("envs"),
        fresh.path().join("sdk"),
        fresh.path().join("out"),
    );
    for folder in [&sdk, &out] {
        std::fs::create_dir(folder).unwrap();
    }
    let sandbox = Sandbox::new(
        &SandboxSettings::default(),
        Path::new(INTERPRETER),
        &envs,
        &sdk,
    );
    if sandbox.identity() == Identity::WorkerUid {
        // Not root: no uid to give away; the worker's own, in a user namespace, is all there is.
        return;
    }
    let sandbox = sandbox.with_identity(Identity::OwnUidOutside);
    let folders = Folders {
        input: None,
        output: Some(out.clone()),
        scratch: None,
        writable: Vec::new(),
        devices: Vec::new(),
    };
    let output = sandbox
        .command(Purpose::Serve, &folders, Path::new(INTERPRETER), &[])
        .expect("the sandbox is available")
        .args([
            "-c",
            "import os; open('/job/out/mine', 'w').write('x'); \
             caps = [l for l in open('/proc/self/status') if l.startswith('CapEff')][0]; \
             print(os.getuid(), os.getgid(), caps.split()[1])",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8_lossy(&output.stdout);
    let fields: Vec<&str> = printed.split_whitespace().collect();
    let uid: u32 = fields[0].parse().unwrap();
    let base = SandboxSettings::default().uid_base;
    assert!((base..base + 10_000).contains(&uid), "{printed}");
    assert_eq!(fields[1], fields[0], "its own gid too");
    assert_eq!(fields[2], "0000000000000000", "no capabilities");
    assert_eq!(std::fs::metadata(out.join("mine")).unwrap().uid(), uid);
}
