//! The Python prototype's default file locations, so that its users who relied on the
//! defaults do not silently start on an empty database (issue 12, seed compatibility).
//!
//! The prototype kept its files under `app/`: with `APP_DB_PATH` unset and no
//! `data/events.sqlite3`, an existing `app/data/events.sqlite3` is the database; with
//! `APP_COMMANDS_PATH` unset and no `commands.json`, an existing `app/commands.json` is the
//! whitelist. Each choice is said in one start-up log line.

use std::path::{Path, PathBuf};

use crate::settings::{DefaultedPaths, Settings};

/// The prototype's database file, relative to the working directory.
pub const PROTOTYPE_DB: &str = "app/data/events.sqlite3";
/// The prototype's command whitelist, relative to the working directory.
pub const PROTOTYPE_COMMANDS: &str = "app/commands.json";

/// Points defaulted paths at the prototype's files when only those exist.
pub fn adopt(settings: &mut Settings, defaulted: DefaultedPaths) {
    if defaulted.db_path
        && settings.database_url.is_none()
        && let Some(path) = prototype_file(&settings.db_path, PROTOTYPE_DB)
    {
        tracing::info!(
            path = %path.display(),
            "APP_DB_PATH is unset and {} does not exist: using the prototype's database",
            settings.db_path.display()
        );
        settings.db_path = path;
    }
    if defaulted.commands_path
        && let Some(path) = prototype_file(&settings.commands_path, PROTOTYPE_COMMANDS)
    {
        tracing::info!(
            path = %path.display(),
            "APP_COMMANDS_PATH is unset and {} does not exist: using the prototype's commands file",
            settings.commands_path.display()
        );
        settings.commands_path = path;
    }
}

/// `prototype` when `default` is missing and `prototype` is a file.
fn prototype_file(default: &Path, prototype: &str) -> Option<PathBuf> {
    let prototype = PathBuf::from(prototype);
    (!default.exists() && prototype.is_file()).then_some(prototype)
}
