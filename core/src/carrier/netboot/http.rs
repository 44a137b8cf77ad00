//! The JSON files of the HTTP tree, spec 3.6: `machines.json`, `<fqdn>/machine.json`,
//! `<fqdn>/<N>/generation.json`. Keys in upstream's order, pretty-printed with two spaces
//! like Ruby's `JSON.pretty_generate`, no trailing newline. kexec-netboot reads them.

use std::fs::File;
use std::ops::Range;
use std::sync::Arc;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::Value;

use super::model::{BootFile, BootGeneration, BootMachine, Variant, variants};
use super::tree::FileParts;

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

fn generation_out<'a>(m: &'a BootMachine, g: &'a BootGeneration) -> GenerationOut<'a> {
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
        variants: variants(m.spin).iter().map(variant_out).collect(),
        swpins_info: &g.swpins_info,
    }
}

fn variant_out(v: &Variant) -> VariantOut<'_> {
    VariantOut { name: v.name, label: v.label, kernel_params: v.kernel_params }
}

fn machine_out(m: &BootMachine) -> MachineOut<'_> {
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
pub(super) fn machine_json(m: &BootMachine) -> String {
    serde_json::to_string_pretty(&machine_out(m)).expect("the machine serializes")
}

/// `<fqdn>/<N>/generation.json`.
pub(super) fn generation_json(m: &BootMachine, g: &BootGeneration) -> String {
    serde_json::to_string_pretty(&generation_out(m, g)).expect("the generation serializes")
}

/// The machine object as it appears inside `machines.json`: every line after the first
/// indented by four spaces, so [`machines_json`] only concatenates.
pub(super) fn machines_entry(machine_json: &str) -> String {
    machine_json.replace('\n', "\n    ")
}

/// An entry of `machines.json` (made by [`machines_entry`]): its bytes, or where it sits
/// in a `machines.json` written earlier (open).
pub(super) enum Entry {
    Bytes(Vec<u8>),
    InFile(Arc<File>, Range<u64>),
}

const HEAD: &[u8] = b"{\n  \"machines\": [\n    ";
const SEPARATOR: &[u8] = b",\n    ";
const TAIL: &[u8] = b"\n  ]\n}";
const EMPTY: &[u8] = b"{\n  \"machines\": []\n}";

/// `machines.json` from its entries, which are only concatenated, and where each entry
/// sits in it. Entries that follow each other in the file they come from are copied in
/// one run, with the separator between them.
pub(super) fn machines_json(entries: Vec<Entry>) -> (FileParts, Vec<Range<u64>>) {
    let mut out = FileParts::default();
    if entries.is_empty() {
        out.push_bytes(EMPTY);
        return (out, Vec::new());
    }
    out.push_bytes(HEAD);
    let mut ranges = Vec::with_capacity(entries.len());
    let sep = SEPARATOR.len() as u64;
    for (i, entry) in entries.into_iter().enumerate() {
        match entry {
            // Follows the previous entry in the same file: the separator is there too.
            Entry::InFile(file, r)
                if i > 0 && out.last_range_end(&file) == Some(r.start.saturating_sub(sep)) =>
            {
                out.push_range(&file, r.start - sep, sep);
                let start = out.len();
                out.push_range(&file, r.start, r.end - r.start);
                ranges.push(start..out.len());
            }
            entry => {
                if i > 0 {
                    out.push_bytes(SEPARATOR);
                }
                let start = out.len();
                match entry {
                    Entry::Bytes(b) => out.push_bytes(&b),
                    Entry::InFile(file, r) => out.push_range(&file, r.start, r.end - r.start),
                }
                ranges.push(start..out.len());
            }
        }
    }
    out.push_bytes(TAIL);
    (out, ranges)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn materialize(
        parts: &FileParts,
        dir: &std::path::Path,
        name: &str,
    ) -> (std::path::PathBuf, Vec<u8>) {
        let path = dir.join(name);
        parts.write_to(&mut File::create_new(&path).unwrap()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, parts.len());
        (path, bytes)
    }

    #[test]
    fn machines_json_is_pretty_json_of_the_list() {
        let t = tempfile::tempdir().unwrap();
        let values = [
            json!({"url": "u", "generations": [{"x": [1, 2]}, {}], "e": []}),
            json!({"url": "v"}),
            json!({"w": 3}),
        ];
        let docs: Vec<String> =
            values.iter().map(|v| serde_json::to_string_pretty(v).unwrap()).collect();
        let entries: Vec<String> = docs.iter().map(|d| machines_entry(d)).collect();
        let expected = |docs: &[&String]| {
            let values: Vec<Value> =
                docs.iter().map(|d| serde_json::from_str(d).unwrap()).collect();
            serde_json::to_string_pretty(&json!({ "machines": values })).unwrap()
        };
        let (parts, ranges) =
            machines_json(entries.iter().map(|e| Entry::Bytes(e.clone().into_bytes())).collect());
        let (path, out) = materialize(&parts, t.path(), "first.json");
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            expected(&docs.iter().collect::<Vec<_>>())
        );
        for (e, r) in entries.iter().zip(&ranges) {
            assert_eq!(&out[r.start as usize..r.end as usize], e.as_bytes());
        }

        // A later file from the ranges of this one: entries 0 and 2 are copied; a new
        // entry comes between them, so no run spans it.
        let file = Arc::new(File::open(&path).unwrap());
        let fresh = machines_entry(&serde_json::to_string_pretty(&json!({"new": true})).unwrap());
        let (parts, ranges2) = machines_json(vec![
            Entry::InFile(file.clone(), ranges[0].clone()),
            Entry::Bytes(fresh.clone().into_bytes()),
            Entry::InFile(file.clone(), ranges[2].clone()),
        ]);
        let (_, out2) = materialize(&parts, t.path(), "second.json");
        let new_doc = serde_json::to_string_pretty(&json!({"new": true})).unwrap();
        assert_eq!(
            String::from_utf8(out2.clone()).unwrap(),
            expected(&[&docs[0], &new_doc, &docs[2]])
        );
        assert_eq!(&out2[ranges2[1].start as usize..ranges2[1].end as usize], fresh.as_bytes());
        // Entries 1 and 2 follow each other in the first file: one run, separator included.
        let (parts, _) = machines_json(vec![
            Entry::InFile(file.clone(), ranges[1].clone()),
            Entry::InFile(file.clone(), ranges[2].clone()),
        ]);
        assert_eq!(parts.parts.len(), 3, "head, one run, tail: {parts:?}");
        let (_, out3) = materialize(&parts, t.path(), "third.json");
        assert_eq!(String::from_utf8(out3).unwrap(), expected(&[&docs[1], &docs[2]]));

        let (parts, _) = machines_json(Vec::new());
        let (_, empty) = materialize(&parts, t.path(), "empty.json");
        assert_eq!(
            String::from_utf8(empty).unwrap(),
            serde_json::to_string_pretty(&json!({"machines": []})).unwrap()
        );
    }
}
