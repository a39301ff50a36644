//! `confab store copy`: a redb data directory into an empty PostgreSQL
//! database (filled in later in this file).

/// What a copy did, per table.
#[derive(Debug, Clone)]
pub struct TableCheck {
    pub table: String,
    pub rows: u64,
    pub checksum: String,
}

#[derive(Debug, Clone)]
pub struct CopyReport {
    pub tables: Vec<TableCheck>,
}

pub async fn copy_from_redb() {}
