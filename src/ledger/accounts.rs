//! Console accounts and their sessions in the ledger. Only hashes and digests are stored:
//! passwords as argon2id, session ids and API tokens as sha256.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

use super::{Ledger, LedgerError};
use crate::review::accounts::Account;
use crate::review::Role;

fn account_of(name: String, role: String, grids: String) -> Account {
    Account {
        name,
        // Only people's roles are ever stored; an unknown one reads as the least powerful.
        role: Role::of_account(&role).unwrap_or(Role::GridWorker),
        grids: serde_json::from_str(&grids).unwrap_or_default(),
    }
}

impl Ledger {
    /// Adds an account; an error names an existing one.
    pub fn add_account(&self, account: &Account, password_hash: &str) -> Result<(), LedgerError> {
        let grids = serde_json::to_string(&account.grids).unwrap_or_else(|_| "[]".into());
        let added = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO accounts (name, role, grids, password_hash, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    account.name,
                    account.role.as_str(),
                    grids,
                    password_hash,
                    Utc::now().timestamp_millis()
                ],
            )
            .map_err(|e| self.err(e))?;
        if added == 0 {
            return Err(LedgerError {
                path: self.path.clone(),
                why: format!(
                    "account {:?} exists already (streetwatch user passwd / remove)",
                    account.name
                ),
            });
        }
        Ok(())
    }

    /// Every account, by name.
    pub fn accounts(&self) -> Result<Vec<Account>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, role, grids FROM accounts ORDER BY name")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok(account_of(r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e));
        rows
    }

    /// An account and its password hash, for a login.
    pub fn account_for_login(&self, name: &str) -> Result<Option<(Account, String)>, LedgerError> {
        self.conn
            .query_row(
                "SELECT name, role, grids, password_hash FROM accounts WHERE name = ?1",
                params![name],
                |r| Ok((account_of(r.get(0)?, r.get(1)?, r.get(2)?), r.get(3)?)),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Removes an account and ends its sessions; false when there was none.
    pub fn remove_account(&self, name: &str) -> Result<bool, LedgerError> {
        self.conn
            .execute("DELETE FROM sessions WHERE account = ?1", params![name])
            .map_err(|e| self.err(e))?;
        self.conn
            .execute("DELETE FROM accounts WHERE name = ?1", params![name])
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }

    /// Sets a new password hash and ends the account's sessions; false when there is no account.
    pub fn set_password(&self, name: &str, password_hash: &str) -> Result<bool, LedgerError> {
        self.conn
            .execute("DELETE FROM sessions WHERE account = ?1", params![name])
            .map_err(|e| self.err(e))?;
        self.conn
            .execute(
                "UPDATE accounts SET password_hash = ?2 WHERE name = ?1",
                params![name, password_hash],
            )
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }

    /// Sets (or with None, withdraws) the digest of an account's API token.
    pub fn set_token_digest(&self, name: &str, digest: Option<&str>) -> Result<bool, LedgerError> {
        self.conn
            .execute(
                "UPDATE accounts SET token_digest = ?2 WHERE name = ?1",
                params![name, digest],
            )
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }

    /// The account whose API token has this digest.
    pub fn account_by_token(&self, digest: &str) -> Result<Option<Account>, LedgerError> {
        self.conn
            .query_row(
                "SELECT name, role, grids FROM accounts WHERE token_digest = ?1",
                params![digest],
                |r| Ok(account_of(r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Opens a session for an account until `expires`.
    pub fn open_session(
        &self,
        digest: &str,
        account: &str,
        expires: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        // Old sessions go as new ones come.
        self.conn
            .execute(
                "DELETE FROM sessions WHERE expires_ms < ?1",
                params![Utc::now().timestamp_millis()],
            )
            .map_err(|e| self.err(e))?;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO sessions (digest, account, expires_ms) VALUES (?1, ?2, ?3)",
                params![digest, account, expires.timestamp_millis()],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// The account of a session that has not expired at `now`.
    pub fn session_account(
        &self,
        digest: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Account>, LedgerError> {
        self.conn
            .query_row(
                "SELECT a.name, a.role, a.grids FROM sessions s JOIN accounts a ON a.name = s.account
                 WHERE s.digest = ?1 AND s.expires_ms > ?2",
                params![digest, now.timestamp_millis()],
                |r| Ok(account_of(r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Ends a session (logout).
    pub fn close_session(&self, digest: &str) -> Result<(), LedgerError> {
        self.conn
            .execute("DELETE FROM sessions WHERE digest = ?1", params![digest])
            .map(|_| ())
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_sessions_and_tokens_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(dir.path()).unwrap();
        let li = Account {
            name: "li".into(),
            role: Role::GridWorker,
            grids: vec!["第八网格".into()],
        };
        l.add_account(&li, "$argon2id$x").unwrap();
        assert!(l.add_account(&li, "$argon2id$y").is_err());
        assert_eq!(l.accounts().unwrap(), vec![li.clone()]);
        let now = Utc::now();
        l.open_session("d1", "li", now + chrono::Duration::hours(1))
            .unwrap();
        assert_eq!(l.session_account("d1", now).unwrap(), Some(li.clone()));
        assert_eq!(
            l.session_account("d1", now + chrono::Duration::hours(2))
                .unwrap(),
            None
        );
        l.set_token_digest("li", Some("t1")).unwrap();
        assert_eq!(l.account_by_token("t1").unwrap(), Some(li.clone()));
        // A new password ends the sessions; removing the account ends everything.
        assert!(l.set_password("li", "$argon2id$z").unwrap());
        assert_eq!(l.session_account("d1", now).unwrap(), None);
        assert!(l.remove_account("li").unwrap());
        assert_eq!(l.account_by_token("t1").unwrap(), None);
        assert!(!l.remove_account("li").unwrap());
    }
}
