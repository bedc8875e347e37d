//! What a fresh install needs: the superadmin, and the built-in templates as public models.

use duma_common::Settings;
use duma_common::db::models::{self, NewModel};
use duma_common::db::{PgPool, users};
use duma_domain::{AccessRight, ModelId, TemplateKind, UserType};
use secrecy::ExposeSecret;

use crate::auth::hash_password;

/// Rafiki's default superadmin password, accepted only in dev mode.
const DEV_SUPERADMIN_PASSWORD: &str = "rafiki";

/// Creates the superadmin if missing (an existing one keeps its password) and upserts the
/// built-in templates, owned by the superadmin and public.
pub async fn seed(settings: &Settings, pool: &PgPool) -> anyhow::Result<()> {
    let email = settings.admin.superadmin_email.as_str();
    let db = pool.get().await?;
    let superadmin = match users::by_email(&db, email).await? {
        Some(user) => user,
        None => {
            let configured = settings.admin.superadmin_password.expose_secret();
            let password = match (configured.is_empty(), settings.dev_mode) {
                (false, _) => configured.to_owned(),
                (true, true) => DEV_SUPERADMIN_PASSWORD.to_owned(),
                (true, false) => anyhow::bail!(
                    "SUPERADMIN_PASSWORD is not set: the superadmin {email} cannot be created without it"
                ),
            };
            let hash = hash_password(&tokio::sync::Semaphore::new(1), password)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            match users::insert(&db, email, &hash, UserType::Superadmin).await {
                Ok(user) => {
                    tracing::info!(email, "superadmin created");
                    user
                }
                // Another admin replica seeded it at the same moment.
                Err(e) if e.is_duplicate_of(users::EMAIL_TAKEN) => users::by_email(&db, email)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("superadmin vanished while seeding"))?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    for template in duma_runtime::builtin_templates() {
        let new = NewModel {
            id: ModelId::new(),
            user_id: superadmin.id,
            name: template.name.to_owned(),
            task: template.task.to_owned(),
            template_kind: TemplateKind::Native,
            source_path: None,
            source_sha256: None,
            source_size_bytes: None,
            model_class: template.model_class.to_owned(),
            knob_config: Some(template.knob_config()),
            dependencies: Default::default(),
            access_right: AccessRight::Public,
            docker_image: None,
            description: None,
            signature: None,
            checkpoint: None,
        };
        models::upsert_builtin(&db, &new).await?;
    }
    Ok(())
}
