//! What a template process lent GPUs really sees, asked of the CUDA driver through ctypes. Needs
//! an NVIDIA GPU and its driver: ignored here, run on the accelerator machine by
//! `scripts/device/gpu-check` (`cargo test -p duma-runtime --test runtime -- --ignored gpu`).

use std::path::{Path, PathBuf};

use duma_common::config::{SandboxMode, SandboxSettings};
use duma_common::worker::gpus::{GpuSelection, Gpus};
use duma_runtime::sandbox::{Devices, Folders, Purpose, Sandbox};
use serde_json::Value;

/// Prints what the CUDA driver reports in this process, as JSON.
const PROBE: &str = r#"
import ctypes, json, os
cuda = ctypes.CDLL("libcuda.so.1")
init = cuda.cuInit(0)
count = ctypes.c_int(0)
if init == 0:
    cuda.cuDeviceGetCount(ctypes.byref(count))
print(json.dumps({
    "init": init,
    "count": count.value,
    "visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
    "nodes": sorted(n for n in os.listdir("/dev") if n.startswith("nvidia")),
}))
"#;

fn interpreter() -> PathBuf {
    std::env::var_os("DUMA_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/python3"))
}

fn probe(sandbox: &Sandbox, devices: &Devices) -> Value {
    let scratch = tempfile::tempdir().unwrap();
    let folders = Folders {
        input: None,
        output: None,
        scratch: Some(scratch.path().to_path_buf()),
        writable: Vec::new(),
        devices: devices.nodes.clone(),
    };
    let visible = devices.cuda_visible_devices.clone().unwrap_or_default();
    let mut env: Vec<(&str, &std::ffi::OsStr)> = Vec::new();
    if devices.cuda_visible_devices.is_some() {
        env.push(("CUDA_VISIBLE_DEVICES", visible.as_ref()));
    }
    let output = sandbox
        .command(Purpose::Train, &folders, &interpreter(), &env)
        .unwrap()
        .args(["-c", PROBE])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the probe failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
#[ignore = "needs an NVIDIA GPU: scripts/device/gpu-check runs it on the accelerator machine"]
fn gpu_a_template_sees_exactly_the_gpus_it_was_lent() {
    let gpus = Gpus::discover(&GpuSelection::Auto).unwrap();
    eprintln!("found through NVML: {:?}", gpus.all());
    assert!(gpus.count() >= 1, "NVML found no GPU");
    assert!(
        gpus.all().iter().all(|g| g.uuid.is_some()),
        "a GPU without UUID"
    );
    let bwrap = std::env::var_os("DUMA_TEST_BWRAP").map(PathBuf::from);
    for mode in [SandboxMode::Off, SandboxMode::Bubblewrap] {
        let settings = SandboxSettings {
            mode,
            bwrap: bwrap.clone().unwrap_or_else(|| "bwrap".into()),
            ..SandboxSettings::default()
        };
        let envs = tempfile::tempdir().unwrap();
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../python");
        let sandbox = Sandbox::new(&settings, &interpreter(), envs.path(), &sdk);
        for lent in [1, 0] {
            let grant = gpus.take(lent).unwrap();
            let devices = Devices::lent(&gpus, &grant);
            let seen = probe(&sandbox, &devices);
            eprintln!("{mode:?}, {lent} GPU(s) lent: {seen}");
            if lent == 1 {
                assert_eq!(seen["init"], 0, "{seen}");
                assert_eq!(seen["count"], 1, "{seen}");
            } else {
                assert_eq!(seen["count"], 0, "a process lent no GPU saw one: {seen}");
            }
            if mode == SandboxMode::Bubblewrap {
                let minor = grant.gpus().first().map(|g| format!("nvidia{}", g.minor));
                let nodes = seen["nodes"].to_string();
                match minor {
                    Some(node) => assert!(nodes.contains(&format!("\"{node}\"")), "{seen}"),
                    None => assert_eq!(seen["nodes"], serde_json::json!([]), "{seen}"),
                }
            }
        }
    }
}
