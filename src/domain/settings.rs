//! Settings whose values are a fixed set of words.

text_enum! {
    /// How log lines are written (`LOG_FORMAT`).
    #[derive(Default)]
    pub enum LogFormat("LOG_FORMAT") {
        /// Human-readable lines.
        #[default]
        Text = "text",
        /// One JSON object per line.
        Json = "json",
    }
}

text_enum! {
    /// SQLite's `synchronous` pragma (`SQLITE_SYNCHRONOUS`).
    #[derive(Default)]
    pub enum SqliteSynchronous("SQLITE_SYNCHRONOUS") {
        /// No syncs at all: a crash of the machine may corrupt the file.
        Off = "off",
        /// In WAL mode: durable against a process crash, not a power loss.
        #[default]
        Normal = "normal",
        /// An fsync per commit: durable against a power loss.
        Full = "full",
        /// Like `full`, and also syncs the directory after a WAL reset.
        Extra = "extra",
    }
}
