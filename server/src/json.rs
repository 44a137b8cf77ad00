//! `--json` output, the same for every command: one JSON value on stdout, indented on a
//! terminal (for people), on one line otherwise (for programs).

use std::io::{IsTerminal, Write};

use serde::Serialize;

/// Prints `value` to stdout as JSON followed by a newline.
pub fn print(value: &impl Serialize) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let pretty = stdout.is_terminal();
    let mut out = std::io::BufWriter::new(stdout.lock());
    write(&mut out, value, pretty)?;
    out.flush()?;
    Ok(())
}

fn write(out: &mut impl Write, value: &impl Serialize, pretty: bool) -> anyhow::Result<()> {
    if pretty {
        serde_json::to_writer_pretty(&mut *out, value)?;
    } else {
        serde_json::to_writer(&mut *out, value)?;
    }
    writeln!(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_for_programs_indented_for_people() {
        let value = serde_json::json!({"a": [1, 2]});
        let mut compact = Vec::new();
        write(&mut compact, &value, false).unwrap();
        assert_eq!(String::from_utf8(compact).unwrap(), "{\"a\":[1,2]}\n");
        let mut pretty = Vec::new();
        write(&mut pretty, &value, true).unwrap();
        assert_eq!(String::from_utf8(pretty).unwrap(), "{\n  \"a\": [\n    1,\n    2\n  ]\n}\n");
    }
}
