//! `carrier ls`: the machine table (configurable columns) or JSON.

use std::io::Write;
use std::process::ExitCode;

use carrier_core::cluster::{Machine, attr_to_string};
use carrier_core::settings::ConfctlSettings;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::cli::{GlobalArgs, LsArgs};

pub fn run(global: &GlobalArgs, args: LsArgs) -> anyhow::Result<ExitCode> {
    let selection = args.select.selection()?;
    let conf_dir = global.conf_dir()?;
    let inventory = global.inventory()?;
    let loaded = inventory.load(&conf_dir)?;
    let machines = selection.select(&loaded.cluster)?;
    // without -o: the configuration's `confctl.list.columns` (evaluated only for a table)
    let columns = match &args.output {
        Some(columns) => columns.clone(),
        None if args.json => Vec::new(),
        None => ConfctlSettings::load(&conf_dir, inventory.cache_dir())?.list_columns,
    };
    if args.json {
        if args.output.is_some() {
            let rows: Vec<Value> = machines.iter().map(|m| columns_json(m, &columns)).collect();
            crate::json::print(&rows)?;
        } else {
            let rows: Vec<Record> = machines.iter().map(|m| Record::new(m)).collect();
            crate::json::print(&rows)?;
        }
    } else {
        let rows: Vec<Vec<String>> = machines
            .iter()
            .map(|m| columns.iter().map(|c| attr_to_string(m.attr(c).as_ref())).collect())
            .collect();
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        write_table(&mut out, &columns, &rows, !args.hide_header)?;
        out.flush()?;
    }
    // The process ends here: skip freeing a large cluster piece by piece.
    std::mem::forget(loaded);
    Ok(ExitCode::SUCCESS)
}

/// The full machine record (upstream's machine JSON, spec 1.4) plus derived fields.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Record<'a> {
    #[serde(flatten)]
    machine: &'a Machine,
    key: String,
    profile: String,
    target_host: Option<&'a str>,
    target_port: u16,
    managed_effective: bool,
    runnable: bool,
    is_carrier: bool,
}

impl<'a> Record<'a> {
    fn new(m: &'a Machine) -> Self {
        Record {
            machine: m,
            key: m.key(),
            profile: m.profile(),
            target_host: m.target_host(),
            target_port: m.target_port(),
            managed_effective: m.is_managed(),
            runnable: m.is_runnable(),
            is_carrier: m.is_carrier(),
        }
    }
}

fn columns_json(m: &Machine, columns: &[String]) -> Value {
    let mut obj = Map::new();
    for c in columns {
        obj.insert(c.clone(), m.attr(c).unwrap_or(Value::Null));
    }
    Value::Object(obj)
}

pub(crate) fn write_table(
    out: &mut impl Write,
    header: &[String],
    rows: &[Vec<String>],
    show_header: bool,
) -> std::io::Result<()> {
    let mut widths: Vec<usize> =
        header.iter().map(|h| if show_header { h.chars().count() } else { 0 }).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: &[String]| -> std::io::Result<()> {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  ", w = *w));
            }
        }
        writeln!(out, "{}", s.trim_end())
    };
    if show_header {
        line(out, &header.iter().map(|h| h.to_uppercase()).collect::<Vec<_>>())?;
    }
    for row in rows {
        line(out, row)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut buf = Vec::new();
        let header = vec!["name".to_string(), "spin".to_string()];
        let rows = vec![
            vec!["pxe-server#node1".to_string(), "nixos".to_string()],
            vec!["a".into(), "".into()],
        ];
        write_table(&mut buf, &header, &rows, true).unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "NAME              SPIN\npxe-server#node1  nixos\na\n"
        );
    }
}
