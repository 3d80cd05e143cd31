//! The example application's own user accounts, in SQLite, and the login hook that links WeChat
//! identities to them: one account per person across the mobile app, website, Official Account
//! and Mini Program (linked by unionid when WeChat sends one, else per app + openid; an
//! (app, openid) seen first without a unionid is joined to the unionid's account when one
//! appears later). Suspended accounts are refused (403 `account_suspended`); a database that
//! cannot be reached (locked, gone) is a transient failure (503, nothing stored).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use rusqlite::{Connection, OptionalExtension, params};
use wechat_login::token_cache::{HookError, LoginHook, NewLogin, UserId};

/// The accounts database. Cheap to clone.
#[derive(Clone)]
pub struct Accounts {
    db: Arc<Mutex<Connection>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS accounts (
    id INTEGER PRIMARY KEY,
    suspended INTEGER NOT NULL DEFAULT 0
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
    ) -> rusqlite::Result<(i64, bool)> {
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
                    tx.execute("INSERT INTO accounts DEFAULT VALUES", [])?;
                    let account = tx.last_insert_rowid();
                    tx.execute(
                        "INSERT INTO identities (appid, openid, unionid, account) VALUES (?1, ?2, ?3, ?4)",
                        params![appid, openid, unionid, account],
                    )?;
                    account
                }
            };
            let suspended: bool = tx.query_row(
                "SELECT suspended FROM accounts WHERE id = ?1",
                params![account],
                |row| row.get(0),
            )?;
            tx.commit()?;
            Ok((account, suspended))
        })
        .await
    }

    /// Suspends an account (its next logins are refused). `false` if there is none.
    pub async fn suspend(&self, user_id: &str) -> rusqlite::Result<bool> {
        let Some(id) = user_id
            .strip_prefix("user-")
            .and_then(|n| n.parse::<i64>().ok())
        else {
            return Ok(false);
        };
        self.with_db(move |db| {
            db.execute(
                "UPDATE accounts SET suspended = 1 WHERE id = ?1",
                params![id],
            )
            .map(|n| n == 1)
        })
        .await
    }
}

/// The user id the application hands out: `user-<account id>`.
fn user_id(account: i64) -> UserId {
    UserId::new(format!("user-{account}")).expect("short and not empty")
}

impl LoginHook for Accounts {
    fn user_id<'a>(&'a self, login: NewLogin<'a>) -> BoxFuture<'a, Result<UserId, HookError>> {
        let appid = login.appid.as_str().to_owned();
        let openid = login.openid.as_str().to_owned();
        let unionid = login.unionid.map(|u| u.as_str().to_owned());
        Box::pin(async move {
            match self.account_for(appid, openid, unionid).await {
                Ok((_, true)) => Err(HookError::refused(
                    "account_suspended",
                    "this account is suspended",
                )),
                Ok((account, false)) => Ok(user_id(account)),
                Err(error) => {
                    tracing::warn!(%error, "the accounts database failed; the login is refused for now");
                    Err(HookError::Unavailable {
                        retry_after: Duration::from_secs(1),
                    })
                }
            }
        })
    }
}
