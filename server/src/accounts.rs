//! `carrier user`, `carrier token` and `carrier audit`: accounts of the dashboard managed
//! by whoever can write the database (the first admin is made here), API tokens shown once,
//! and the audit log every account and token change is written to. Decisions:
//! docs/accounts.md.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use carrier_core::auth::{Role, Scope};
use carrier_storage::{AuditFilter, NewAuditEntry, Store, StoreError, hash_password};
use serde_json::json;

use crate::cli::{
    AuditArgs, GlobalArgs, PasswordArgs, TokenArgs, TokenCommand, UserArgs, UserCommand,
};

/// Shorter passwords are refused: they fall to guessing whatever the hash.
const MIN_PASSWORD: usize = 8;

pub fn user(global: &GlobalArgs, args: UserArgs) -> anyhow::Result<ExitCode> {
    // the password is read before the database is opened: a refused one changes nothing
    let password = match &args.command {
        UserCommand::Add { password, .. } | UserCommand::Passwd { password, .. } => {
            Some(hash_password(&read_password(password)?)?)
        }
        _ => None,
    };
    with_store(global, async |store| match args.command {
        UserCommand::Add { name, role, scope, .. } => {
            let role: Role = role.parse()?;
            let scope = parse_scope(&scope)?;
            let hash = password.as_deref().unwrap_or_default();
            let details = json!({"role": role, "scope": scope});
            let result = store.add_user(&name, hash, role, scope.as_ref()).await;
            audited(store, "user.add", &name, details, result).await?;
            println!("added {role} '{name}'");
            Ok(())
        }
        UserCommand::Passwd { name, .. } => {
            let hash = password.as_deref().unwrap_or_default();
            let result = store.set_password(&name, hash).await;
            audited(store, "user.passwd", &name, json!({}), result).await?;
            println!("changed the password of '{name}'; its sessions have ended");
            Ok(())
        }
        UserCommand::Rm { name } => {
            let result = store.remove_user(&name).await;
            audited(store, "user.rm", &name, json!({}), result).await?;
            println!("removed '{name}' with its sessions and tokens");
            Ok(())
        }
        UserCommand::Disable { name } => set_disabled(store, &name, true).await,
        UserCommand::Enable { name } => set_disabled(store, &name, false).await,
        UserCommand::Ls { json } => {
            let users = store.users().await?;
            if json {
                return crate::json::print(&users);
            }
            for u in &users {
                let scope = u.scope.as_ref().map_or("all machines".into(), |s| s.terms().join(" "));
                let disabled = if u.disabled { " (disabled)" } else { "" };
                println!("{:<20} {:<8} {:<30} {}{disabled}", u.name, u.role, scope, u.created_at);
            }
            Ok(())
        }
    })
}

async fn set_disabled(store: &Store, name: &str, disabled: bool) -> anyhow::Result<()> {
    let verb = if disabled { "disable" } else { "enable" };
    let result = store.set_disabled(name, disabled).await;
    audited(store, &format!("user.{verb}"), name, json!({}), result).await?;
    println!("{verb}d '{name}'");
    Ok(())
}

pub fn token(global: &GlobalArgs, args: TokenArgs) -> anyhow::Result<ExitCode> {
    with_store(global, async |store| match args.command {
        TokenCommand::Create { user, name, rights, scope, days } => {
            let owner = store.user(&user).await?.ok_or_else(|| StoreError::NoUser(user.clone()))?;
            let rights: Role = rights.as_deref().map(str::parse).transpose()?.unwrap_or(owner.role);
            let scope = parse_scope(&scope)?;
            let ttl = jiff::SignedDuration::from_hours(24 * i64::from(days));
            let details = json!({"name": name, "rights": rights, "scope": scope, "days": days});
            let result = store.create_token(&owner, &name, rights, scope.as_ref(), ttl).await;
            let secret = audited(store, "token.create", &user, details, result).await?;
            eprintln!(
                "token '{name}' of '{user}', shown only now (use: Authorization: Bearer ...):"
            );
            println!("{secret}");
            Ok(())
        }
        TokenCommand::Ls { user, json } => {
            let tokens = store.tokens(user.as_deref()).await?;
            if json {
                return crate::json::print(&tokens);
            }
            for t in &tokens {
                let state = match (&t.revoked_at, &t.last_used_at) {
                    (Some(at), _) => format!("revoked {at}"),
                    (None, Some(at)) => format!("last used {at}"),
                    (None, None) => "never used".into(),
                };
                println!(
                    "{:<16} {:<16} {:<8} expires {} {state}",
                    t.user, t.name, t.rights, t.expires_at
                );
            }
            Ok(())
        }
        TokenCommand::Revoke { user, name } => {
            let result = store.revoke_token(&user, &name).await;
            audited(store, "token.revoke", &user, json!({"name": name}), result).await?;
            println!("revoked token '{name}' of '{user}'");
            Ok(())
        }
    })
}

pub fn audit(global: &GlobalArgs, args: AuditArgs) -> anyhow::Result<ExitCode> {
    let filter = AuditFilter {
        actor: args.actor,
        action: args.action,
        since: None,
        limit: args.limit.into(),
    };
    with_store(global, async |store| {
        let entries = store.audit_log(&filter).await?;
        if args.json {
            return crate::json::print(&entries);
        }
        for e in &entries {
            let target = e.target.as_deref().unwrap_or("-");
            let from = e.address.as_deref().map(|a| format!(" from {a}")).unwrap_or_default();
            println!(
                "#{} {} {}{from} {} {target} {} {}",
                e.id, e.at, e.actor, e.action, e.outcome, e.details
            );
        }
        Ok(())
    })
}

/// Opens the store, runs `f` and closes the store whatever `f` returned.
fn with_store(
    global: &GlobalArgs,
    f: impl AsyncFnOnce(&Store) -> anyhow::Result<()>,
) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let store = Store::open(&global.database_url()).await?;
        let result = f(&store).await;
        store.close().await;
        result
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Writes an audit entry for a change made from the CLI, succeeded or failed, and passes
/// the change's result on.
async fn audited<T>(
    store: &Store,
    action: &str,
    target: &str,
    details: serde_json::Value,
    result: Result<T, StoreError>,
) -> anyhow::Result<T> {
    let (user, host) = crate::records::who();
    let outcome = match &result {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("failed: {e}"),
    };
    let entry = NewAuditEntry {
        // the CLI acts as whoever can write the database: the local OS account
        actor: format!("os:{user}@{host}"),
        address: None,
        action: action.into(),
        target: Some(target.into()),
        details,
        git: None,
        outcome,
    };
    store.audit(&entry).await.context("the change was made but not written to the audit log")?;
    Ok(result?)
}

fn parse_scope(terms: &[String]) -> anyhow::Result<Option<Scope>> {
    Ok(if terms.is_empty() { None } else { Some(Scope::parse(terms)?) })
}

/// The password from `--password-file` (its first line), else asked twice on the terminal.
fn read_password(args: &PasswordArgs) -> anyhow::Result<String> {
    let password = match &args.password_file {
        Some(path) => first_line(path)?,
        None => {
            let first = prompt("Password: ")?;
            if prompt("Password again: ")? != first {
                bail!("the passwords differ; nothing was changed");
            }
            first
        }
    };
    if password.chars().count() < MIN_PASSWORD {
        bail!("the password is shorter than {MIN_PASSWORD} characters; nothing was changed");
    }
    Ok(password)
}

fn first_line(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the password file {}", path.display()))?;
    Ok(text.lines().next().unwrap_or_default().to_string())
}

/// Asks on the controlling terminal with echo off; never reads stdin, which may be a pipe
/// of something else.
fn prompt(question: &str) -> anyhow::Result<String> {
    use std::os::fd::AsRawFd;
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .context("no terminal to ask for the password on: give --password-file")?;
    let fd = tty.as_raw_fd();
    // SAFETY: termios is plain data, filled by tcgetattr on an open descriptor.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
        bail!("no terminal to ask for the password on: give --password-file");
    }
    let mut quiet = saved;
    quiet.c_lflag &= !libc::ECHO;
    (&tty).write_all(question.as_bytes())?;
    // SAFETY: fd is open; the settings come from tcgetattr.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    let mut line = String::new();
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    (&tty).write_all(b"\n")?;
    read.context("reading the password from the terminal")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
