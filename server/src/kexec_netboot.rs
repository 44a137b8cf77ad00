//! `carrier kexec-netboot` (spec 3.7): on a machine netbooted by a carrier, choose a
//! machine, generation and variant from the carrier's `machines.json` and load it with
//! kexec (`--exec` boots the loaded kernel, `--unload` drops it). The work is
//! `carrier_core::carrier::kexec`; this module reads the flags and talks to the terminal.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use carrier_core::carrier::kexec;

use crate::cli::KexecNetbootArgs;

pub fn run(args: KexecNetbootArgs) -> anyhow::Result<ExitCode> {
    if args.unload {
        kexec::unload(&args.kexec)?;
        println!("kexec: unloaded");
        return Ok(ExitCode::SUCCESS);
    }
    if args.exec {
        kexec::exec(&args.kexec, args.no_sync)?;
        return Ok(ExitCode::SUCCESS);
    }
    let cmdline = kexec::read_cmdline(&args.cmdline)?;
    let url = kexec::machines_url(&cmdline, args.server_url.as_deref())?;
    let machines = kexec::fetch_machines(&url)?;
    let own = args.machine.clone();
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let fqdn = match (args.interactive, own) {
        (true, own) => pick_machine(&machines, own.as_deref(), &mut input)?,
        (false, Some(fqdn)) => fqdn,
        (false, None) => {
            bail!("which machine? give --machine (or CARRIER_MACHINE_FQDN), or --interactive")
        }
    };
    let choice =
        kexec::choose(&machines, &fqdn, args.generation, args.variant.as_deref(), &args.append)?;
    println!("Machine:    {}", choice.fqdn);
    println!("Generation: {}", choice.generation);
    if let Some(v) = &choice.variant {
        println!("Variant:    {v}");
    }
    println!("Kernel:     {}", choice.kernel_url);
    println!("Initrd:     {}", choice.initrd_url);
    println!("Parameters: {}", choice.params);
    if args.interactive && !confirm(&mut input)? {
        println!("Aborted");
        return Ok(ExitCode::FAILURE);
    }
    let work = kexec::work_dir()?;
    kexec::load(&choice, &args.kexec, work.path())?;
    println!("kexec: loaded; `carrier kexec-netboot --exec` boots it");
    Ok(ExitCode::SUCCESS)
}

/// Lists the machines and reads a number; 0 or an empty line is this machine.
fn pick_machine(
    machines: &kexec::MachinesJson,
    own: Option<&str>,
    input: &mut dyn BufRead,
) -> anyhow::Result<String> {
    println!("Machines of {} carrier:", if own.is_some() { "this machine's" } else { "the" });
    if let Some(own) = own {
        println!("  0) {own} (this machine)");
    }
    for (i, m) in machines.machines.iter().enumerate() {
        println!("  {}) {} [{}] {}", i + 1, m.fqdn, m.spin, m.label);
    }
    print!("Machine [{}]: ", if own.is_some() { "0" } else { "1" });
    std::io::stdout().flush()?;
    let mut line = String::new();
    input.read_line(&mut line).context("reading the answer")?;
    match (line.trim(), own) {
        ("" | "0", Some(own)) => Ok(own.to_string()),
        ("", None) if !machines.machines.is_empty() => Ok(machines.machines[0].fqdn.clone()),
        (n, _) => match n
            .parse::<usize>()
            .ok()
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| machines.machines.get(i))
        {
            Some(m) => Ok(m.fqdn.clone()),
            None => bail!("no machine {n:?} in the list"),
        },
    }
}

fn confirm(input: &mut dyn BufRead) -> anyhow::Result<bool> {
    print!("Continue? [y/N] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    input.read_line(&mut line).context("reading the answer")?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machines() -> kexec::MachinesJson {
        serde_json::from_value(serde_json::json!({"machines": [
            {"fqdn": "a.lab", "generations": []},
            {"fqdn": "b.lab", "generations": []}
        ]}))
        .unwrap()
    }

    #[test]
    fn the_picker_defaults_to_this_machine_and_takes_list_numbers() {
        let m = machines();
        let pick = |own: Option<&str>, answer: &str| pick_machine(&m, own, &mut answer.as_bytes());
        assert_eq!(pick(Some("self.lab"), "\n").unwrap(), "self.lab");
        assert_eq!(pick(Some("self.lab"), "0\n").unwrap(), "self.lab");
        assert_eq!(pick(Some("self.lab"), "2\n").unwrap(), "b.lab");
        assert_eq!(pick(None, "\n").unwrap(), "a.lab");
        assert!(
            pick(Some("self.lab"), "3\n").unwrap_err().to_string().contains("no machine \"3\"")
        );
        assert!(pick(None, "x\n").is_err());
        assert!(confirm(&mut "y\n".as_bytes()).unwrap());
        assert!(!confirm(&mut "\n".as_bytes()).unwrap());
    }
}
