//! `duma datasets …` and `duma models …`: uploads with progress and checksums, listings.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::api::{Admin, Failure, Outcome};
use super::{Globals, bytes, cell, table};

#[derive(Debug, clap::Subcommand)]
pub enum DatasetCommand {
    /// Upload a dataset file (CSV, or a zip of images or of a corpus) for a task.
    Upload {
        file: PathBuf,
        /// The task it serves, e.g. TABULAR_CLASSIFICATION.
        #[arg(long)]
        task: String,
        /// Its name [default: the file's name]
        #[arg(long)]
        name: Option<String>,
    },
    /// Your datasets.
    Ls {
        /// Only datasets of this task.
        #[arg(long)]
        task: Option<String>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ModelCommand {
    /// The models you may use: built-in, public and your own.
    Ls {
        /// Only models of this task.
        #[arg(long)]
        task: Option<String>,
    },
    /// Upload a Python model template.
    Upload {
        file: PathBuf,
        /// The template's class (a `BaseModel` subclass in the file).
        #[arg(long = "class")]
        class: String,
        /// The task it serves, e.g. IMAGE_CLASSIFICATION.
        #[arg(long)]
        task: String,
        /// Its name [default: the class]
        #[arg(long)]
        name: Option<String>,
        /// A pip dependency, `package=version` (version may be empty); repeat for more.
        #[arg(long = "deps", value_name = "PACKAGE=VERSION", num_args = 1..)]
        deps: Vec<String>,
        /// Let every user train it (default: yours alone).
        #[arg(long)]
        public: bool,
    },
    /// A model's details.
    Show { id: String },
    /// Delete one of your models.
    Rm { id: String },
}

pub async fn datasets(globals: &Globals, command: DatasetCommand) -> Outcome<()> {
    let (admin, _) = globals.admin().await?;
    match command {
        DatasetCommand::Upload { file, task, name } => {
            let dataset = upload_dataset(globals, &admin, &file, &task, name).await?;
            globals.output.show(&dataset, || {
                format!(
                    "Uploaded {} ({}) as dataset {}\nsha256 {} (matches the file)",
                    cell(&dataset["name"]),
                    bytes(dataset["size_bytes"].as_u64().unwrap_or(0)),
                    cell(&dataset["id"]),
                    cell(&dataset["sha256"]),
                )
            });
        }
        DatasetCommand::Ls { task } => {
            let path = match &task {
                Some(task) => format!("/datasets?task={}", super::api::segment(task)),
                None => "/datasets".to_owned(),
            };
            let list = admin.get(&path).await?;
            globals.output.show(&list, || {
                table(
                    &["ID", "NAME", "TASK", "SIZE", "CREATED"],
                    items(&list).map(|d| {
                        vec![
                            cell(&d["id"]),
                            cell(&d["name"]),
                            cell(&d["task"]),
                            bytes(d["size_bytes"].as_u64().unwrap_or(0)),
                            cell(&d["datetime_created"]),
                        ]
                    }),
                )
            });
        }
    }
    Ok(())
}

/// Uploads `file` as a dataset; its view, once the stored checksum matches the file's.
pub async fn upload_dataset(
    globals: &Globals,
    admin: &Admin,
    file: &Path,
    task: &str,
    name: Option<String>,
) -> Outcome<Value> {
    let name = name.unwrap_or_else(|| file_name(file));
    let (dataset, sha256) = upload(
        globals,
        admin,
        "/datasets",
        file,
        "dataset",
        vec![("name", name), ("task", task.to_owned())],
    )
    .await?;
    if dataset["sha256"].as_str() != Some(sha256.as_str()) {
        return Err(Failure::other(format!(
            "the stored dataset's checksum {} is not the file's {sha256}: upload it again",
            cell(&dataset["sha256"])
        )));
    }
    Ok(dataset)
}

fn file_name(file: &Path) -> String {
    file.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "upload".to_owned())
}

/// Streams `file` as the part `part` of a multipart form with `fields`, with a progress bar
/// (bytes, rate, time left) for people; the answer and the file's SHA-256.
async fn upload(
    globals: &Globals,
    admin: &Admin,
    path: &str,
    file: &Path,
    part: &str,
    fields: Vec<(&str, String)>,
) -> Outcome<(Value, String)> {
    let opened = tokio::fs::File::open(file)
        .await
        .map_err(|e| Failure::usage(format!("{}: {e}", file.display())))?;
    let size = opened
        .metadata()
        .await
        .map_err(|e| Failure::usage(format!("{}: {e}", file.display())))?
        .len();
    let progress = if globals.output.live() {
        let bar = indicatif::ProgressBar::new(size);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .map_err(|e| Failure::other(e.to_string()))?
            .progress_chars("=> "),
        );
        bar.set_message(format!("uploading {}", file_name(file)));
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let hasher = Arc::new(Mutex::new(Sha256::new()));
    let (seen, shown) = (hasher.clone(), progress.clone());
    let stream = tokio_util::io::ReaderStream::new(opened).map(move |chunk| {
        if let Ok(bytes) = &chunk {
            if let Ok(mut hasher) = seen.lock() {
                hasher.update(bytes);
            }
            shown.inc(bytes.len() as u64);
        }
        chunk
    });
    let body = reqwest::Body::wrap_stream(stream);
    let mut form = Form::new();
    for (name, value) in fields {
        form = form.text(name.to_owned(), value);
    }
    let file_part = Part::stream_with_length(body, size).file_name(file_name(file));
    form = form.part(part.to_owned(), file_part);
    let answer = admin
        .send(admin.request(Method::POST, path).multipart(form))
        .await;
    progress.finish_and_clear();
    let answer = answer?;
    let digest = hasher
        .lock()
        .map(|h| hex::encode(h.clone().finalize()))
        .map_err(|_| Failure::other("the checksum was lost"))?;
    Ok((answer, digest))
}

pub async fn models(globals: &Globals, command: ModelCommand) -> Outcome<()> {
    let (admin, _) = globals.admin().await?;
    match command {
        ModelCommand::Ls { task } => {
            let list = available_models(&admin, task.as_deref()).await?;
            globals.output.show(&list, || {
                table(
                    &["ID", "NAME", "TASK", "ACCESS", "DEPENDENCIES"],
                    items(&list).map(|m| {
                        vec![
                            cell(&m["id"]),
                            cell(&m["name"]),
                            cell(&m["task"]),
                            cell(&m["access_right"]),
                            dependencies(&m["dependencies"]),
                        ]
                    }),
                )
            });
        }
        ModelCommand::Upload {
            file,
            class,
            task,
            name,
            deps,
            public,
        } => {
            let mut dependencies = serde_json::Map::new();
            for dep in deps {
                let (package, version) = dep.split_once('=').unwrap_or((dep.as_str(), ""));
                if package.is_empty() {
                    return Err(Failure::usage(format!(
                        "--deps {dep}: write package=version (the version may be empty)"
                    )));
                }
                dependencies.insert(package.to_owned(), json!(version));
            }
            let fields = vec![
                ("name", name.unwrap_or_else(|| class.clone())),
                ("task", task),
                ("model_class", class),
                ("dependencies", Value::Object(dependencies).to_string()),
                (
                    "access_right",
                    if public { "PUBLIC" } else { "PRIVATE" }.to_owned(),
                ),
            ];
            let (model, _) = upload(
                globals,
                &admin,
                "/models",
                &file,
                "model_file_bytes",
                fields,
            )
            .await?;
            globals.output.show(&model, || {
                format!(
                    "Uploaded model {} as {}",
                    cell(&model["name"]),
                    cell(&model["id"])
                )
            });
        }
        ModelCommand::Show { id } => {
            let model = admin
                .get(&format!("/models/{}", super::api::segment(&id)))
                .await?;
            globals.output.show(&model, || {
                let field = |key: &str| (key.to_owned(), cell(&model[key]));
                table(
                    &["FIELD", "VALUE"],
                    [
                        field("id"),
                        field("name"),
                        field("task"),
                        field("model_class"),
                        field("access_right"),
                        (
                            "dependencies".to_owned(),
                            dependencies(&model["dependencies"]),
                        ),
                        field("model_description"),
                        field("datetime_created"),
                    ]
                    .into_iter()
                    .map(|(k, v)| vec![k, v]),
                )
            });
        }
        ModelCommand::Rm { id } => {
            let deleted = admin
                .delete(&format!("/models/{}", super::api::segment(&id)))
                .await?;
            globals
                .output
                .show(&deleted, || format!("Deleted model {id}"));
        }
    }
    Ok(())
}

pub async fn available_models(admin: &Admin, task: Option<&str>) -> Outcome<Value> {
    let path = match task {
        Some(task) => format!("/models/available?task={}", super::api::segment(task)),
        None => "/models/available".to_owned(),
    };
    admin.get(&path).await
}

/// The elements of a JSON list (none for anything else).
pub fn items(list: &Value) -> impl Iterator<Item = &Value> {
    list.as_array().into_iter().flatten()
}

fn dependencies(value: &Value) -> String {
    match value.as_object() {
        Some(map) if !map.is_empty() => map
            .iter()
            .map(|(k, v)| match v.as_str() {
                Some("") | None => k.clone(),
                Some(version) => format!("{k}={version}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => "-".to_owned(),
    }
}
