//! `duma login`, `logout`, `whoami`: the token in the user's config folder
//! (`$XDG_CONFIG_HOME/duma/login.json`, readable by the user alone).

use std::io::{BufRead, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Globals;
use super::api::{Admin, Failure, Outcome};

/// What `duma login` keeps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Login {
    pub admin: String,
    pub email: String,
    pub user_id: String,
    pub user_type: String,
    pub token: String,
}

fn path() -> Outcome<PathBuf> {
    dirs::config_dir()
        .map(|dir| dir.join("duma").join("login.json"))
        .ok_or_else(|| Failure::other("no config folder: set HOME or XDG_CONFIG_HOME"))
}

/// The saved login, if any.
pub fn saved() -> Outcome<Option<Login>> {
    let path = path()?;
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Failure::other(format!(
                "{} is damaged ({e}): run `duma login` again",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Failure::other(format!("reading {}: {e}", path.display()))),
    }
}

fn save(login: &Login) -> Outcome<PathBuf> {
    let path = path()?;
    let failed = |e: std::io::Error| Failure::other(format!("saving {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(failed)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(failed)?;
    }
    // Written aside and renamed: a reader never sees half a file, and the mode is 0600 from
    // the first byte.
    let partial = path.with_extension("json.partial");
    let _ = std::fs::remove_file(&partial);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .map_err(failed)?;
    let body = serde_json::to_vec_pretty(login).map_err(|e| Failure::other(e.to_string()))?;
    file.write_all(&body).map_err(failed)?;
    file.sync_all().map_err(failed)?;
    std::fs::rename(&partial, &path).map_err(failed)?;
    Ok(path)
}

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The account's email (asked for when left out).
    #[arg(long)]
    email: Option<String>,
    /// Read the password from the first line of standard input instead of asking.
    #[arg(long)]
    password_stdin: bool,
}

pub async fn login(globals: &Globals, args: LoginArgs) -> Outcome<()> {
    let admin_url = globals.admin_url(None);
    let email = match args.email {
        Some(email) => email,
        None => dialoguer::Input::<String>::new()
            .with_prompt("Email")
            .interact_text()
            .map_err(prompt_failed)?,
    };
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Failure::other(format!("reading the password: {e}")))?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        dialoguer::Password::new()
            .with_prompt("Password")
            .interact()
            .map_err(prompt_failed)?
    };
    let admin = Admin::new(&admin_url, None)?;
    let token = admin
        .post("/tokens", &json!({"email": email, "password": password}))
        .await?;
    let text = |key: &str| token[key].as_str().unwrap_or_default().to_owned();
    let login = Login {
        admin: admin_url,
        email,
        user_id: text("user_id"),
        user_type: text("user_type"),
        token: text("token"),
    };
    let path = save(&login)?;
    globals.output.show(
        &json!({"admin": login.admin, "email": login.email, "user_type": login.user_type}),
        || {
            format!(
                "Logged in to {} as {} ({}); the token is in {}.",
                login.admin,
                login.email,
                login.user_type,
                path.display()
            )
        },
    );
    Ok(())
}

fn prompt_failed(error: dialoguer::Error) -> Failure {
    Failure::usage(format!(
        "cannot ask for it ({error}): pass --email, and the password with --password-stdin"
    ))
}

pub fn logout(globals: &Globals) -> Outcome<()> {
    let path = path()?;
    let was = match std::fs::remove_file(&path) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(Failure::other(format!("removing {}: {e}", path.display()))),
    };
    globals.output.show(&json!({"logged_out": was}), || {
        if was {
            "Logged out.".to_owned()
        } else {
            "Not logged in.".to_owned()
        }
    });
    Ok(())
}

pub async fn whoami(globals: &Globals) -> Outcome<()> {
    let (admin, login) = globals.admin().await?;
    // Proves the token still works (any signed-in user may list the models they can use).
    admin.get("/models/available").await?;
    globals.output.show(
        &json!({"admin": admin.base, "email": login.email, "user_id": login.user_id,
                "user_type": login.user_type}),
        || format!("{} ({}) at {}", login.email, login.user_type, admin.base),
    );
    Ok(())
}

/// The login a command runs as, or a clear failure.
pub fn required() -> Outcome<Login> {
    saved()?.ok_or_else(|| Failure::other("not logged in: run `duma login` first"))
}
