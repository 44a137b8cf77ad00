//! The `carrier` binary: parses the command line and hands over to a command module.

use clap::Parser;
use server::{
    accounts, build, cli, deploy, generation, health_check, history, kexec_netboot, lab, ls,
    netboot, profile, serve, ssh, status, test_connection,
};

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Ls(args) => ls::run(&cli.global, args),
        cli::Command::Build(args) => build::run(&cli.global, args),
        cli::Command::Serve(args) => serve::run(&cli.global, args),
        cli::Command::Profile(args) => profile::run(args),
        cli::Command::Netboot(args) => netboot::run(args),
        cli::Command::Deploy(args) => deploy::run(&cli.global, args),
        cli::Command::Status(args) => status::run(&cli.global, args),
        cli::Command::Lab(args) => lab::run(&cli.global, args),
        cli::Command::KexecNetboot(args) => kexec_netboot::run(args),
        cli::Command::Generation(args) => generation::run(&cli.global, args),
        cli::Command::CollectGarbage(args) => generation::collect_garbage(&cli.global, args),
        cli::Command::History(args) => history::run(&cli.global, args),
        cli::Command::User(args) => accounts::user(&cli.global, args),
        cli::Command::Token(args) => accounts::token(&cli.global, args),
        cli::Command::Audit(args) => accounts::audit(&cli.global, args),
        cli::Command::TestConnection(args) => test_connection::run(&cli.global, args),
        cli::Command::HealthCheck(args) => health_check::run(&cli.global, args),
        cli::Command::Ssh(args) => ssh::run(&cli.global, args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
