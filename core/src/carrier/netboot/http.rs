//! The JSON files of the HTTP tree, spec 3.6: `machines.json`, `<fqdn>/machine.json`,
//! `<fqdn>/<N>/generation.json`. Keys in upstream's order, pretty-printed with two spaces
//! like Ruby's `JSON.pretty_generate`, no trailing newline. kexec-netboot reads them.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::Value;

use super::model::{BootFile, Generation, Machine, Variant};

#[derive(Serialize)]
struct MachineOut<'a> {
    url: &'a str,
    name: &'a str,
    spin: &'a str,
    fqdn: &'a str,
    label: &'a str,
    generations: Vec<GenerationOut<'a>>,
}

#[derive(Serialize)]
struct GenerationOut<'a> {
    url: &'a str,
    store_path: String,
    generation: u64,
    time: i64,
    time_s: &'a str,
    current: bool,
    toplevel: &'a str,
    version: &'a Option<String>,
    revision: &'a Option<String>,
    shortrev: &'a Option<String>,
    macs: &'a [String],
    kernel_version: &'a Option<String>,
    kernel_params: &'a [String],
    boot_files: BootFilesOut<'a>,
    variants: Vec<VariantOut<'a>>,
    swpins_info: &'a Option<Value>,
}

struct BootFilesOut<'a>(&'a [BootFile]);

impl Serialize for BootFilesOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for f in self.0 {
            map.serialize_entry(f.name, &f.url)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct VariantOut<'a> {
    name: &'a str,
    label: &'a str,
    kernel_params: &'a [&'a str],
}

fn generation_out<'a>(m: &'a Machine, g: &'a Generation) -> GenerationOut<'a> {
    GenerationOut {
        url: &g.url,
        store_path: g.store_path.display().to_string(),
        generation: g.number,
        time: g.time,
        time_s: &g.time_s,
        current: g.current,
        toplevel: &g.toplevel,
        version: &g.version,
        revision: &g.revision,
        shortrev: &g.shortrev,
        macs: &g.macs,
        kernel_version: &g.kernel_version,
        kernel_params: &g.kernel_params,
        boot_files: BootFilesOut(&g.boot_files),
        variants: m.spin.variants().iter().map(variant_out).collect(),
        swpins_info: &g.swpins_info,
    }
}

fn variant_out(v: &Variant) -> VariantOut<'_> {
    VariantOut { name: v.name, label: v.label, kernel_params: v.kernel_params }
}

fn machine_out(m: &Machine) -> MachineOut<'_> {
    MachineOut {
        url: &m.url,
        name: &m.name,
        spin: m.spin.as_str(),
        fqdn: &m.fqdn,
        label: &m.label,
        generations: m.generations.iter().map(|g| generation_out(m, g)).collect(),
    }
}

/// `<fqdn>/machine.json`.
pub fn machine_json(m: &Machine) -> String {
    serde_json::to_string_pretty(&machine_out(m)).expect("the machine serializes")
}

/// `<fqdn>/<N>/generation.json`.
pub fn generation_json(m: &Machine, g: &Generation) -> String {
    serde_json::to_string_pretty(&generation_out(m, g)).expect("the generation serializes")
}

/// The machine object as it appears inside `machines.json`: every line after the first
/// indented by four spaces, so [`machines_json`] only concatenates.
pub fn machines_entry(machine_json: &str) -> String {
    machine_json.replace('\n', "\n    ")
}

/// Writes `machines.json` from files holding entries made by [`machines_entry`],
/// streaming them (the file is large: every generation of every machine).
pub fn write_machines_json(path: &Path, entry_files: &[PathBuf]) -> std::io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 16, File::create(path)?);
    if entry_files.is_empty() {
        out.write_all(b"{\n  \"machines\": []\n}")?;
        return out.flush();
    }
    out.write_all(b"{\n  \"machines\": [\n")?;
    // Entries are small: read each into one buffer and write in large blocks (a
    // copy_file_range per entry costs more than the read).
    let mut buf = Vec::new();
    for (i, entry) in entry_files.iter().enumerate() {
        if i > 0 {
            out.write_all(b",\n")?;
        }
        out.write_all(b"    ")?;
        buf.clear();
        File::open(entry)?.read_to_end(&mut buf)?;
        out.write_all(&buf)?;
    }
    out.write_all(b"\n  ]\n}")?;
    out.flush()
}

/// `machines.json` from entries made by [`machines_entry`], in memory.
#[cfg(test)]
fn machines_json<S: AsRef<str>>(entries: &[S]) -> String {
    if entries.is_empty() {
        return "{\n  \"machines\": []\n}".to_string();
    }
    let total: usize = entries.iter().map(|e| e.as_ref().len() + 6).sum();
    let mut out = String::with_capacity(total + 32);
    out.push_str("{\n  \"machines\": [\n");
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push_str(",\n");
        }
        out.push_str("    ");
        out.push_str(e.as_ref());
    }
    out.push_str("\n  ]\n}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn machines_json_is_pretty_json_of_the_list() {
        let a =
            serde_json::to_string_pretty(&json!({"url": "u", "generations": [{"x": [1, 2]}, {}], "e": []})).unwrap();
        let b = serde_json::to_string_pretty(&json!({"url": "v"})).unwrap();
        let out = machines_json(&[machines_entry(&a), machines_entry(&b)]);
        let expected = serde_json::to_string_pretty(&json!({"machines": [
            serde_json::from_str::<Value>(&a).unwrap(), serde_json::from_str::<Value>(&b).unwrap()]}))
        .unwrap();
        assert_eq!(out, expected);
        let empty: [&str; 0] = [];
        assert_eq!(machines_json(&empty), serde_json::to_string_pretty(&json!({"machines": []})).unwrap());

        let t = tempfile::tempdir().unwrap();
        let files: Vec<PathBuf> = [&a, &b]
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let p = t.path().join(format!("e{i}"));
                std::fs::write(&p, machines_entry(e)).unwrap();
                p
            })
            .collect();
        for (n, expected) in [(2, out), (0, machines_json(&empty))] {
            write_machines_json(&t.path().join("m.json"), &files[..n]).unwrap();
            assert_eq!(std::fs::read_to_string(t.path().join("m.json")).unwrap(), expected);
        }
    }
}
