//! The GPUs a train or inference worker schedules work on: found through NVIDIA's management
//! library (NVML, loaded at run time, so machines without the driver build and run unchanged)
//! or named in the settings; lent whole to one trial or served model at a time, and given back
//! when its [`GpuGrant`] is dropped.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use prometheus::{IntGauge, IntGaugeVec, Opts, Registry};

/// Which GPUs the settings ask for (`worker.gpus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuSelection {
    /// Every GPU the driver reports; none without a driver.
    Auto,
    None,
    /// These device indices (as `nvidia-smi` numbers them).
    Indices(Vec<u32>),
}

impl GpuSelection {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "auto" => Ok(Self::Auto),
            "none" | "" => Ok(Self::None),
            list => {
                let mut indices = Vec::new();
                for part in list.split(',') {
                    let index: u32 = part.trim().parse().map_err(|_| {
                        format!("must be `auto`, `none` or device indices like `0,1`; got {list:?}")
                    })?;
                    if indices.contains(&index) {
                        return Err(format!("names device {index} twice"));
                    }
                    indices.push(index);
                }
                Ok(Self::Indices(indices))
            }
        }
    }
}

/// One GPU of this worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    /// The driver's index (`nvidia-smi`'s number).
    pub index: u32,
    /// `GPU-…`, from the driver; absent for GPUs named in the settings on a machine without it.
    pub uuid: Option<String>,
    pub name: Option<String>,
    /// The minor number of its device node, `/dev/nvidia<minor>`.
    pub minor: u32,
}

struct Inner {
    gpus: Vec<Gpu>,
    /// Positions in `gpus` not lent out.
    free: Mutex<BTreeSet<usize>>,
    nvml: Option<nvml_wrapper::Nvml>,
    /// `duma_worker_gpus_in_use`, once registered.
    in_use: Mutex<Option<IntGauge>>,
}

impl Inner {
    fn publish_in_use(&self, free: usize) {
        if let Some(gauge) = &*self.in_use.lock() {
            gauge.set(i64::try_from(self.gpus.len() - free).unwrap_or(i64::MAX));
        }
    }
}

/// The worker's GPUs and which of them are lent out. Cheap to clone.
#[derive(Clone)]
pub struct Gpus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Gpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpus")
            .field("gpus", &self.inner.gpus)
            .field("free", &*self.inner.free.lock())
            .finish()
    }
}

impl Gpus {
    /// The GPUs `selection` names: through NVML where the driver is there; named indices without
    /// it are taken as given (their device nodes are bound if they exist).
    pub fn discover(selection: &GpuSelection) -> anyhow::Result<Self> {
        if *selection == GpuSelection::None {
            return Ok(Self::new(Vec::new(), None));
        }
        let nvml = match nvml_wrapper::Nvml::init() {
            Ok(nvml) => Some(nvml),
            Err(error) => {
                tracing::info!(%error, "no NVIDIA driver (NVML): no GPU found");
                None
            }
        };
        let gpus = match (&nvml, selection) {
            (Some(nvml), _) => {
                let count = nvml.device_count()?;
                let wanted: Vec<u32> = match selection {
                    GpuSelection::Indices(indices) => indices.clone(),
                    _ => (0..count).collect(),
                };
                let mut gpus = Vec::new();
                for index in wanted {
                    anyhow::ensure!(
                        index < count,
                        "GPU {index} does not exist: the driver reports {count}"
                    );
                    let device = nvml.device_by_index(index)?;
                    gpus.push(Gpu {
                        index,
                        uuid: device.uuid().ok(),
                        name: device.name().ok(),
                        minor: device.minor_number().unwrap_or(index),
                    });
                }
                gpus
            }
            (None, GpuSelection::Indices(indices)) => indices
                .iter()
                .map(|&index| Gpu {
                    index,
                    uuid: None,
                    name: None,
                    minor: index,
                })
                .collect(),
            (None, _) => Vec::new(),
        };
        Ok(Self::new(gpus, nvml))
    }

    /// A worker with these GPUs and no driver to ask (tests, and the scheduling itself).
    pub fn from_list(gpus: Vec<Gpu>) -> Self {
        Self::new(gpus, None)
    }

    fn new(gpus: Vec<Gpu>, nvml: Option<nvml_wrapper::Nvml>) -> Self {
        let free = (0..gpus.len()).collect();
        Self {
            inner: Arc::new(Inner {
                gpus,
                free: Mutex::new(free),
                nvml,
                in_use: Mutex::new(None),
            }),
        }
    }

    pub fn all(&self) -> &[Gpu] {
        &self.inner.gpus
    }

    pub fn count(&self) -> u32 {
        u32::try_from(self.inner.gpus.len()).unwrap_or(u32::MAX)
    }

    /// GPUs not lent out now: the most a claim may ask for.
    pub fn free_count(&self) -> u32 {
        u32::try_from(self.inner.free.lock().len()).unwrap_or(u32::MAX)
    }

    /// Lends `n` free GPUs (the lowest-numbered), or `None` if fewer are free. `n = 0` always
    /// succeeds with an empty grant.
    pub fn take(&self, n: u32) -> Option<GpuGrant> {
        let n = usize::try_from(n).ok()?;
        let mut free = self.inner.free.lock();
        if free.len() < n {
            return None;
        }
        let taken: Vec<usize> = free.iter().copied().take(n).collect();
        for position in &taken {
            free.remove(position);
        }
        self.inner.publish_in_use(free.len());
        Some(GpuGrant {
            gpus: taken.iter().map(|&p| self.inner.gpus[p].clone()).collect(),
            positions: taken,
            inner: Arc::clone(&self.inner),
        })
    }

    /// What the worker registers: how many GPUs it has, and which.
    pub fn capabilities(&self) -> serde_json::Value {
        serde_json::json!({
            "count": self.count(),
            "devices": self.inner.gpus.iter().map(|g| serde_json::json!({
                "index": g.index, "uuid": g.uuid, "name": g.name,
            })).collect::<Vec<_>>(),
        })
    }

    /// Registers `duma_worker_gpus`, `duma_worker_gpus_in_use` and, where the driver answers, each
    /// GPU's utilisation and memory (read by [`GpuMetrics::sample`]).
    pub fn register_metrics(&self, registry: &Registry) -> prometheus::Result<GpuMetrics> {
        let total = IntGauge::with_opts(Opts::new(
            "duma_worker_gpus",
            "GPUs this worker schedules work on",
        ))?;
        total.set(i64::from(self.count()));
        registry.register(Box::new(total))?;
        let in_use = IntGauge::with_opts(Opts::new(
            "duma_worker_gpus_in_use",
            "GPUs of this worker lent to a trial or a served model",
        ))?;
        registry.register(Box::new(in_use.clone()))?;
        *self.inner.in_use.lock() = Some(in_use);
        self.inner.publish_in_use(self.inner.free.lock().len());
        let utilisation = IntGaugeVec::new(
            Opts::new(
                "duma_gpu_utilization_percent",
                "Percent of the last sample period a kernel ran on the GPU (NVML)",
            ),
            &["gpu"],
        )?;
        let memory_used = IntGaugeVec::new(
            Opts::new("duma_gpu_memory_used_bytes", "GPU memory in use (NVML)"),
            &["gpu"],
        )?;
        let memory_total = IntGaugeVec::new(
            Opts::new("duma_gpu_memory_total_bytes", "GPU memory installed (NVML)"),
            &["gpu"],
        )?;
        registry.register(Box::new(utilisation.clone()))?;
        registry.register(Box::new(memory_used.clone()))?;
        registry.register(Box::new(memory_total.clone()))?;
        Ok(GpuMetrics {
            gpus: self.clone(),
            utilisation,
            memory_used,
            memory_total,
        })
    }
}

/// GPUs lent to one trial or served model; given back when dropped.
pub struct GpuGrant {
    gpus: Vec<Gpu>,
    positions: Vec<usize>,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for GpuGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuGrant")
            .field("gpus", &self.gpus)
            .finish()
    }
}

impl GpuGrant {
    pub fn gpus(&self) -> &[Gpu] {
        &self.gpus
    }

    /// `CUDA_VISIBLE_DEVICES` for the template's process: the GPUs' UUIDs where known (they
    /// name the same devices whatever the process can enumerate), else their indices. Empty
    /// for no GPUs: CUDA then sees none.
    pub fn visible_devices(&self) -> String {
        self.gpus
            .iter()
            .map(|g| g.uuid.clone().unwrap_or_else(|| g.index.to_string()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The device nodes the template's sandbox needs for these GPUs: each one's node and the
    /// driver's shared ones (none for no GPUs).
    pub fn device_nodes(&self) -> Vec<PathBuf> {
        if self.gpus.is_empty() {
            return Vec::new();
        }
        let mut nodes: Vec<PathBuf> = self
            .gpus
            .iter()
            .map(|g| PathBuf::from(format!("/dev/nvidia{}", g.minor)))
            .collect();
        for shared in [
            "/dev/nvidiactl",
            "/dev/nvidia-uvm",
            "/dev/nvidia-uvm-tools",
            "/dev/nvidia-modeset",
        ] {
            nodes.push(PathBuf::from(shared));
        }
        nodes
    }
}

impl Drop for GpuGrant {
    fn drop(&mut self) {
        let mut free = self.inner.free.lock();
        free.extend(self.positions.iter().copied());
        self.inner.publish_in_use(free.len());
    }
}

/// Per-GPU utilisation and memory, read from the driver.
pub struct GpuMetrics {
    gpus: Gpus,
    utilisation: IntGaugeVec,
    memory_used: IntGaugeVec,
    memory_total: IntGaugeVec,
}

impl GpuMetrics {
    /// Reads every GPU once (nothing without a driver).
    pub fn sample(&self) {
        let Some(nvml) = &self.gpus.inner.nvml else {
            return;
        };
        for gpu in &self.gpus.inner.gpus {
            let Ok(device) = nvml.device_by_index(gpu.index) else {
                continue;
            };
            let label = gpu.index.to_string();
            if let Ok(rates) = device.utilization_rates() {
                self.utilisation
                    .with_label_values(&[&label])
                    .set(i64::from(rates.gpu));
            }
            if let Ok(memory) = device.memory_info() {
                let bytes = |b: u64| i64::try_from(b).unwrap_or(i64::MAX);
                self.memory_used
                    .with_label_values(&[&label])
                    .set(bytes(memory.used));
                self.memory_total
                    .with_label_values(&[&label])
                    .set(bytes(memory.total));
            }
        }
    }

    /// Whether there is a driver to sample.
    pub fn has_driver(&self) -> bool {
        self.gpus.inner.nvml.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpus(n: u32) -> Gpus {
        Gpus::from_list(
            (0..n)
                .map(|index| Gpu {
                    index,
                    uuid: Some(format!("GPU-{index}")),
                    name: None,
                    minor: index,
                })
                .collect(),
        )
    }

    #[test]
    fn the_selection_is_auto_none_or_distinct_indices() {
        assert_eq!(GpuSelection::parse("auto"), Ok(GpuSelection::Auto));
        assert_eq!(GpuSelection::parse("none"), Ok(GpuSelection::None));
        assert_eq!(
            GpuSelection::parse("0, 2"),
            Ok(GpuSelection::Indices(vec![0, 2]))
        );
        assert!(GpuSelection::parse("0,0").is_err());
        assert!(GpuSelection::parse("all").is_err());
        assert!(GpuSelection::parse("-1").is_err());
    }

    #[test]
    fn grants_never_share_a_gpu_and_give_theirs_back_when_dropped() {
        let pool = gpus(4);
        let first = pool.take(3).expect("3 of 4");
        assert_eq!(pool.free_count(), 1);
        assert!(pool.take(2).is_none(), "only one is free");
        let second = pool.take(1).expect("the last one");
        let mut lent: Vec<u32> = first
            .gpus()
            .iter()
            .chain(second.gpus())
            .map(|g| g.index)
            .collect();
        lent.sort_unstable();
        assert_eq!(lent, vec![0, 1, 2, 3]);
        drop(first);
        assert_eq!(pool.free_count(), 3);
        assert_eq!(pool.take(3).expect("back").gpus().len(), 3);
        drop(second);
        assert_eq!(pool.free_count(), 4);
    }

    #[test]
    fn a_grant_names_its_devices_by_uuid_and_binds_their_nodes() {
        let pool = gpus(3);
        let _zero = pool.take(1).unwrap();
        let grant = pool.take(2).unwrap();
        assert_eq!(grant.visible_devices(), "GPU-1,GPU-2");
        let nodes = grant.device_nodes();
        assert!(nodes.contains(&PathBuf::from("/dev/nvidia1")));
        assert!(nodes.contains(&PathBuf::from("/dev/nvidia2")));
        assert!(!nodes.contains(&PathBuf::from("/dev/nvidia0")));
        assert!(nodes.contains(&PathBuf::from("/dev/nvidiactl")));
        let none = pool.take(0).unwrap();
        assert_eq!(none.visible_devices(), "");
        assert!(none.device_nodes().is_empty());
    }

    #[test]
    fn without_a_driver_auto_finds_no_gpu_and_named_indices_are_taken_as_given() {
        // This test machine has no NVIDIA driver; where one is, `auto` finds its GPUs.
        if nvml_wrapper::Nvml::init().is_ok() {
            return;
        }
        assert_eq!(Gpus::discover(&GpuSelection::Auto).unwrap().count(), 0);
        let named = Gpus::discover(&GpuSelection::Indices(vec![1, 3])).unwrap();
        assert_eq!(
            named.all().iter().map(|g| g.index).collect::<Vec<_>>(),
            vec![1, 3]
        );
        assert_eq!(named.take(2).unwrap().visible_devices(), "1,3");
    }
}
