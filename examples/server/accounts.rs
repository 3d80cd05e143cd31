//! The example application's own user accounts, in SQLite, and the login hook that links WeChat
//! identities to them: one account per person across the mobile app, website, Official Account
//! and Mini Program (linked by unionid when WeChat sends one, else per app + openid; an
//! (app, openid) seen first without a unionid is joined to the unionid's account when one
//! appears later). Suspended accounts are refused (403 `account_suspended`); a database that
//! cannot be reached (locked, gone) is a transient failure (503, nothing stored).
//!
//! The user id handed out is an account's random public id (`u_` and 32 hex digits), never a
//! counter: sessions in a shared store outlive this process and are seen by every instance, so
//! an id must never be given to a second person, whatever happens to a database (a restart
//! with accounts in memory, another instance's database). Ids are stable for as long as the
//! database keeps the account.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use wechat_login::sessions::{HookError, LoginHook, NewLogin, UserId};

/// The accounts database. Cheap to clone.
#[derive(Clone)]
pub struct Accounts {
    db: Arc<Mutex<Connection>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS accounts (
    id INTEGER PRIMARY KEY,
    suspended INTEGER NOT NULL DEFAULT 0,
    public_id TEXT
);
CREATE TABLE IF NOT EXISTS identities (
    appid TEXT NOT NULL,
    openid TEXT NOT NULL,
    unionid TEXT,
    account INTEGER NOT NULL REFERENCES accounts(id),
    PRIMARY KEY (appid, openid)
);
CREATE INDEX IF NOT EXISTS identities_by_unionid ON identities(unionid);
";

/// Gives every account a random public id (databases made before there were public ids get
/// theirs here), unique by index.
const PUBLIC_IDS: &str = "
UPDATE accounts SET public_id = 'u_' || lower(hex(randomblob(16))) WHERE public_id IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS accounts_by_public_id ON accounts(public_id);
";

/// How long a statement waits for a lock held by another connection before failing.
const BUSY_TIMEOUT: Duration = Duration::from_millis(250);

impl Accounts {
    /// The database at `path` (created if missing), or a private in-memory one.
    pub fn open(path: Option<&Path>) -> rusqlite::Result<Self> {
        let db = match path {
            Some(path) => Connection::open(path)?,
            None => Connection::open_in_memory()?,
        };
        db.busy_timeout(BUSY_TIMEOUT)?;
        db.execute_batch(SCHEMA)?;
        let has_public_ids = db.prepare("SELECT public_id FROM accounts LIMIT 0").is_ok();
        if !has_public_ids {
            db.execute_batch("ALTER TABLE accounts ADD COLUMN public_id TEXT")?;
        }
        db.execute_batch(PUBLIC_IDS)?;
        Ok(Self {
            db: Arc::new(Mutex::new(db)),
        })
    }

    /// Runs `work` on the connection off the async threads.
    async fn with_db<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> rusqlite::Result<T> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            let mut db = db.lock().unwrap_or_else(|e| e.into_inner());
            work(&mut db)
        })
        .await
        .unwrap_or(Err(rusqlite::Error::InvalidQuery))
    }

    /// The account of this identity, created or linked as needed; whether it is suspended.
    async fn account_for(
        &self,
        appid: String,
        openid: String,
        unionid: Option<String>,
    ) -> rusqlite::Result<(String, bool)> {
        self.with_db(move |db| {
            let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let known: Option<(i64, Option<String>)> = tx
                .query_row(
                    "SELECT account, unionid FROM identities WHERE appid = ?1 AND openid = ?2",
                    params![appid, openid],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            let by_unionid: Option<i64> = match &unionid {
                Some(unionid) => tx
                    .query_row(
                        "SELECT account FROM identities WHERE unionid = ?1 LIMIT 1",
                        params![unionid],
                        |row| row.get(0),
                    )
                    .optional()?,
                None => None,
            };
            let account = match (known, by_unionid) {
                (Some((account, stored)), _) => {
                    if stored.is_none() && unionid.is_some() {
                        // A unionid appeared for an identity first seen without one.
                        tx.execute(
                            "UPDATE identities SET unionid = ?3 WHERE appid = ?1 AND openid = ?2",
                            params![appid, openid, unionid],
                        )?;
                    }
                    account
                }
                (None, Some(account)) => {
                    tx.execute(
                        "INSERT INTO identities (appid, openid, unionid, account) VALUES (?1, ?2, ?3, ?4)",
                        params![appid, openid, unionid, account],
                    )?;
                    account
                }
                (None, None) => {
                    tx.execute(
                        "INSERT INTO accounts (public_id) VALUES ('u_' || lower(hex(randomblob(16))))",
                        [],
                    )?;
                    let account = tx.last_insert_rowid();
                    tx.execute(
                        "INSERT INTO identities (appid, openid, unionid, account) VALUES (?1, ?2, ?3, ?4)",
                        params![appid, openid, unionid, account],
                    )?;
                    account
                }
            };
            let (public_id, suspended): (String, bool) = tx.query_row(
                "SELECT public_id, suspended FROM accounts WHERE id = ?1",
                params![account],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?;
            tx.commit()?;
            Ok((public_id, suspended))
        })
        .await
    }

    /// Suspends an account (its next logins are refused). `false` if there is none.
    pub async fn suspend(&self, user_id: &str) -> rusqlite::Result<bool> {
        let id = user_id.to_owned();
        self.with_db(move |db| {
            db.execute(
                "UPDATE accounts SET suspended = 1 WHERE public_id = ?1",
                params![id],
            )
            .map(|n| n == 1)
        })
        .await
    }
}

/// Where the application's accounts may live, given where sessions live: sessions in a shared
/// store (Redis) outlive this process and are seen by every instance, so accounts kept in this
/// process's memory would be lost at a restart and differ between instances — one person's
/// sessions would then be counted, listed and ended with someone else's account. Refused.
pub fn check_placement(sessions_shared: bool, accounts_db: Option<&Path>) -> Result<(), String> {
    if sessions_shared && accounts_db.is_none() {
        return Err(
            "sessions are in a shared store (REDIS_URL), but the accounts would be in this \
             process's memory: a restart or another instance would link people to the wrong \
             account. Set ACCOUNTS_DB to an accounts database every instance shares"
                .into(),
        );
    }
    Ok(())
}

impl LoginHook for Accounts {
    async fn user_id(&self, login: NewLogin<'_>) -> Result<UserId, HookError> {
        let appid = login.appid.as_str().to_owned();
        let openid = login.openid.as_str().to_owned();
        let unionid = login.unionid.map(|u| u.as_str().to_owned());
        match self.account_for(appid, openid, unionid).await {
            Ok((_, true)) => Err(HookError::refused(
                "account_suspended",
                "this account is suspended",
            )),
            Ok((public_id, false)) => UserId::new(public_id).ok_or_else(|| {
                tracing::error!("an account has an unusable public id");
                HookError::Unavailable {
                    retry_after: Duration::from_secs(1),
                }
            }),
            Err(error) => {
                tracing::warn!(%error, "the accounts database failed; the login is refused for now");
                Err(HookError::Unavailable {
                    retry_after: Duration::from_secs(1),
                })
            }
        }
    }
}
