//! The `user` command: console accounts in the node's ledger (`user add|list|remove|passwd|
//! token`). Passwords are read from standard input (not echoed on a terminal) or from the
//! environment variable `STREETWATCH_PASSWORD`, never from the command line where `ps` shows
//! them.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{anyhow, bail, Context, Result};

use crate::ledger::Ledger;
use crate::review::accounts::{self, Account};
use crate::review::Role;

/// What to do with accounts.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum UserAction {
    /// Add an account; the password is read from stdin (or STREETWATCH_PASSWORD).
    Add {
        /// Login name.
        name: String,
        /// admin (edits zones, manages everything), operator (reviews, dispatches) or
        /// grid_worker (sees their grids' events, marks them cleared).
        #[arg(long)]
        role: String,
        /// A grid the grid worker works in (the zones' `grid`); repeat for several.
        #[arg(long = "grid")]
        grids: Vec<String>,
    },
    /// List the accounts (no secrets).
    List,
    /// Remove an account and end its sessions.
    Remove {
        /// Login name.
        name: String,
    },
    /// Set a new password (stdin or STREETWATCH_PASSWORD); ends the account's sessions.
    Passwd {
        /// Login name.
        name: String,
    },
    /// Make a new API token for the account (printed once; `Authorization: Bearer TOKEN`),
    /// replacing any earlier one; `--revoke` withdraws it.
    Token {
        /// Login name.
        name: String,
        /// Withdraw the token instead.
        #[arg(long)]
        revoke: bool,
    },
}

/// Runs a `user` action on the ledger in `storage`.
pub fn run(storage: &std::path::Path, action: UserAction) -> Result<()> {
    std::fs::create_dir_all(storage)
        .with_context(|| format!("cannot create the storage folder {}", storage.display()))?;
    let ledger = Ledger::open(storage)?;
    match action {
        UserAction::Add { name, role, grids } => {
            let role = Role::of_account(&role)
                .ok_or_else(|| anyhow!("--role {role:?}: use admin, operator or grid_worker"))?;
            accounts::check_account(&name, role, &grids)?;
            let hash = accounts::hash_password(&read_password(&name)?)?;
            ledger.add_account(
                &Account {
                    name: name.clone(),
                    role,
                    grids,
                },
                &hash,
            )?;
            println!("account {name} added ({})", role.as_str());
        }
        UserAction::List => {
            let all = ledger.accounts()?;
            if all.is_empty() {
                println!("no accounts: add one with `streetwatch user add NAME --role admin`");
            }
            for a in all {
                println!(
                    "{:<24} {:<12} {}",
                    a.name,
                    a.role.as_str(),
                    a.grids.join(", ")
                );
            }
        }
        UserAction::Remove { name } => {
            if !ledger.remove_account(&name)? {
                bail!("no account {name:?} (streetwatch user list)");
            }
            println!("account {name} removed");
        }
        UserAction::Passwd { name } => {
            let hash = accounts::hash_password(&read_password(&name)?)?;
            if !ledger.set_password(&name, &hash)? {
                bail!("no account {name:?} (streetwatch user list)");
            }
            println!("password of {name} changed; its sessions are ended");
        }
        UserAction::Token { name, revoke } => {
            if revoke {
                if !ledger.set_token_digest(&name, None)? {
                    bail!("no account {name:?} (streetwatch user list)");
                }
                println!("token of {name} withdrawn");
            } else {
                let token = accounts::new_secret();
                if !ledger.set_token_digest(&name, Some(&accounts::digest(&token)))? {
                    bail!("no account {name:?} (streetwatch user list)");
                }
                // Only the token goes to stdout, so scripts can capture it.
                eprintln!(
                    "API token of {name} (shown once; send it as Authorization: Bearer ...):"
                );
                println!("{token}");
            }
        }
    }
    Ok(())
}

/// The password from STREETWATCH_PASSWORD, or one line of stdin (prompted, not echoed, on a
/// terminal).
fn read_password(name: &str) -> Result<String> {
    if let Ok(p) = std::env::var("STREETWATCH_PASSWORD") {
        return Ok(p);
    }
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    if terminal {
        eprint!("password for {name}: ");
        let _ = std::io::stderr().flush();
        let _ = std::process::Command::new("stty").arg("-echo").status();
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if terminal {
        let _ = std::process::Command::new("stty").arg("echo").status();
        eprintln!();
    }
    read.context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        bail!("no password given: type it, pipe it in, or set STREETWATCH_PASSWORD");
    }
    Ok(password)
}
