//! Manifests: one clip a row, as CSV (RFC 4180 quoting, an optional byte-order mark), TSV or
//! JSON lines. Columns `path,label[,speaker][,start,end][,split]`; audiofolder's `file_name` and
//! EmoBox's JSONL keys (`key`, `wav`, `emo`, `speaker`, `channel`) are read as they are. Paths are
//! relative to the manifest's folder unless absolute; `start`/`end` (seconds) cut a segment.

use super::{Layout, Read, Row};
use crate::features::set::RowSplit;
use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::path::Path;

/// The names each field goes by, first match wins.
const PATH: [&str; 4] = ["path", "file_name", "wav", "file"];
const LABEL: [&str; 3] = ["label", "emo", "emotion"];
const SPEAKER: [&str; 2] = ["speaker", "speaker_id"];

/// Reads a manifest into rows: structural faults (a missing column, a bad number, `start >=
/// end`) are errors naming the file and line; rows naming a missing file are skipped and listed.
pub(crate) fn read(file: &Path) -> Result<Read> {
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file).with_context(|| format!("{name}: cannot read"))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let records: Vec<(usize, HashMap<String, String>)> = match ext.as_str() {
        "jsonl" | "json" => json_lines(&name, text)?,
        "csv" => delimited(&name, text, b',')?,
        "tsv" => delimited(&name, text, b'\t')?,
        _ => bail!("{name}: a manifest is .csv, .tsv or .jsonl"),
    };
    let base = file.parent().unwrap_or(Path::new("."));
    let mut read = Read { layout: Layout::Manifest, summary: String::new(), rows: vec![], unmatched: vec![], skipped: vec![] };
    if records.is_empty() {
        bail!("{name}: no rows");
    }
    let first = &records[0].1;
    let column = |names: &[&str]| names.iter().find(|n| first.contains_key(**n)).map(|n| n.to_string());
    let path_col = column(&PATH).with_context(|| format!("{name}: no path column (one of {})", PATH.join(", ")))?;
    let label_col = column(&LABEL).with_context(|| format!("{name}: no label column (one of {})", LABEL.join(", ")))?;
    let speaker_col = column(&SPEAKER);
    for (line, rec) in &records {
        let origin = format!("{name} line {line}");
        let get = |col: &str| rec.get(col).map(|v| v.trim()).filter(|v| !v.is_empty());
        let path = get(&path_col).with_context(|| format!("{origin}: no {path_col}"))?;
        let label = get(&label_col).with_context(|| format!("{origin}: no {label_col}"))?;
        let segment = match (get("start"), get("end")) {
            (None, None) => None,
            (Some(s), Some(e)) => {
                let number = |what: &str, v: &str| v.parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0).with_context(|| format!("{origin}: {what} {v:?} is not a time in seconds"));
                let (s, e) = (number("start", s)?, number("end", e)?);
                if s >= e {
                    bail!("{origin}: start {s} is not before end {e}");
                }
                Some([s, e])
            }
            _ => bail!("{origin}: a segment needs both start and end"),
        };
        let split = match get("split") {
            Some(text) => Some(RowSplit::parse(text).with_context(|| format!("{origin}: split {text:?} is not train, valid or test"))?),
            None => None,
        };
        let file = base.join(path);
        if !file.is_file() {
            read.skipped.push((origin, format!("{path}: no such file")));
            continue;
        }
        read.rows.push(Row {
            file,
            relative: path.replace('\\', "/"),
            raw_label: label.to_string(),
            emotion: None,
            speaker: speaker_col.as_deref().and_then(get).map(str::to_string),
            segment,
            split,
            origin,
            ravdess: None,
        });
    }
    read.summary = format!("{} ({} rows{})", Layout::Manifest.describe(), records.len(), if read.skipped.is_empty() { String::new() } else { format!(", {} naming missing files", read.skipped.len()) });
    Ok(read)
}

/// JSON lines: one object a line (blank lines skipped); values kept as text.
fn json_lines(name: &str, text: &str) -> Result<Vec<(usize, HashMap<String, String>)>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(line).with_context(|| format!("{name} line {}: not JSON", i + 1))?;
        let serde_json::Value::Object(object) = value else { bail!("{name} line {}: not a JSON object", i + 1) };
        let record = object
            .into_iter()
            .filter_map(|(k, v)| match v {
                serde_json::Value::String(s) => Some((k, s)),
                serde_json::Value::Number(n) => Some((k, n.to_string())),
                _ => None,
            })
            .collect();
        out.push((i + 1, record));
    }
    Ok(out)
}

/// CSV or TSV with a header row; fields in double quotes may hold the delimiter, newlines and
/// doubled quotes. Each record is keyed by the header's (lower-cased) names.
fn delimited(name: &str, text: &str, delimiter: u8) -> Result<Vec<(usize, HashMap<String, String>)>> {
    let records = split_records(name, text, delimiter)?;
    let Some((_, header)) = records.first() else { bail!("{name}: empty") };
    let header: Vec<String> = header.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
    let mut out = Vec::new();
    for (line, fields) in &records[1..] {
        if fields.len() == 1 && fields[0].trim().is_empty() {
            continue;
        }
        if fields.len() != header.len() {
            bail!("{name} line {line}: {} fields where the header has {} ({})", fields.len(), header.len(), header.join(","));
        }
        out.push((*line, header.iter().cloned().zip(fields.iter().cloned()).collect()));
    }
    Ok(out)
}

/// Records with the line each starts on.
fn split_records(name: &str, text: &str, delimiter: u8) -> Result<Vec<(usize, Vec<String>)>> {
    let mut records = Vec::new();
    let (mut fields, mut field, mut quoted, mut line, mut start_line) = (Vec::new(), String::new(), false, 1, 1);
    let mut chars = text.chars().peekable();
    let mut field_started_quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() && !field_started_quoted && delimiter == b',' => {
                quoted = true;
                field_started_quoted = true;
            }
            c if c as u32 == delimiter as u32 => {
                fields.push(std::mem::take(&mut field));
                field_started_quoted = false;
            }
            '\r' => {}
            '\n' => {
                fields.push(std::mem::take(&mut field));
                records.push((start_line, std::mem::take(&mut fields)));
                field_started_quoted = false;
                line += 1;
                start_line = line;
            }
            _ => field.push(c),
        }
    }
    if quoted {
        bail!("{name} line {start_line}: a quoted field is never closed");
    }
    if !field.is_empty() || !fields.is_empty() {
        fields.push(field);
        records.push((start_line, fields));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_bom_and_line_numbers() {
        let r = split_records("m.csv", "path,label\n\"a, b.wav\",\"say \"\"hi\"\"\"\r\nc.wav,sad\n", b',').unwrap();
        assert_eq!(r, vec![(1, vec!["path".into(), "label".into()]), (2, vec!["a, b.wav".into(), "say \"hi\"".into()]), (3, vec!["c.wav".into(), "sad".into()])]);
        let r = split_records("m.csv", "path,label\n\"multi\nline.wav\",x\nlast.wav,y", b',').unwrap();
        assert_eq!((r[1].0, r[2].0, r[2].1[0].as_str()), (2, 4, "last.wav"));
        assert!(split_records("m.csv", "path,label\n\"open,x\n", b',').unwrap_err().to_string().contains("line 2"));
        let e = delimited("m.csv", "path,label\na.wav\n", b',').unwrap_err().to_string();
        assert!(e.contains("m.csv line 2: 1 fields where the header has 2"), "{e}");
    }

    /// A quote opens a quoted field only at a CSV field's start; TSV takes quotes as text; a
    /// last record without its line break still counts.
    #[test]
    fn quotes_open_fields_only_where_they_start_them() {
        let r = split_records("m.csv", "path,label\nsay \"hi\".wav,x\n", b',').unwrap();
        assert_eq!(r[1].1, ["say \"hi\".wav", "x"]);
        let r = split_records("m.csv", "path,label\n\"a.wav\"b,x\n", b',').unwrap();
        assert_eq!(r[1].1, ["a.wavb", "x"], "text after a closing quote stays in the field");
        let r = split_records("m.tsv", "path\tlabel\n\"a.wav\"\tx\n", b'\t').unwrap();
        assert_eq!(r[1].1, ["\"a.wav\"", "x"]);
        let r = split_records("m.csv", "path\na.wav", b',').unwrap();
        assert_eq!(r, vec![(1, vec!["path".to_string()]), (2, vec!["a.wav".to_string()])]);
    }

    #[test]
    fn json_lines_keep_text_and_numbers_with_their_line() {
        let r = json_lines("m.jsonl", "{\"wav\": \"a.wav\", \"emo\": \"sad\", \"start\": 1.5, \"x\": [1]}\n\n{\"wav\": \"b.wav\", \"emo\": \"hap\"}\n").unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].0, r[0].1["wav"].as_str(), r[0].1["emo"].as_str(), r[0].1["start"].as_str()), (1, "a.wav", "sad", "1.5"));
        assert!(!r[0].1.contains_key("x"), "a list is not a field");
        assert_eq!((r[1].0, r[1].1["wav"].as_str()), (3, "b.wav"));
        assert!(json_lines("m.jsonl", "{\"wav\": 1}\n[1]\n").unwrap_err().to_string().contains("line 2: not a JSON object"));
    }

    /// The three formats read the same rows: paths against the manifest's folder, segments,
    /// splits, speakers; rows naming missing files skipped and listed; faults name the line.
    #[test]
    fn every_format_reads_the_same_rows() {
        let dir = std::env::temp_dir().join(format!("ser-manifest-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["a.wav", "b.wav"] {
            std::fs::write(dir.join(f), b"").unwrap();
        }
        let manifests = [
            ("m.csv", "path,label,speaker,start,end,split\na.wav,sad,s1,0.5,1.5,test\nb.wav,happy,s2,,,train\ngone.wav,sad,s1,,,train\n"),
            ("m.tsv", "path\tlabel\tspeaker\tstart\tend\tsplit\na.wav\tsad\ts1\t0.5\t1.5\ttest\nb.wav\thappy\ts2\t\t\ttrain\ngone.wav\tsad\ts1\t\t\ttrain\n"),
            ("m.jsonl", "{\"wav\":\"a.wav\",\"emo\":\"sad\",\"speaker\":\"s1\",\"start\":0.5,\"end\":1.5,\"split\":\"test\"}\n{\"wav\":\"b.wav\",\"emo\":\"happy\",\"speaker\":\"s2\",\"split\":\"train\"}\n{\"wav\":\"gone.wav\",\"emo\":\"sad\",\"speaker\":\"s1\",\"split\":\"train\"}\n"),
        ];
        for (name, text) in manifests {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            let r = read(&path).unwrap();
            type Fields = (String, String, Option<String>, Option<[f64; 2]>, Option<RowSplit>);
            let rows: Vec<Fields> = r.rows.iter().map(|w| (w.relative.clone(), w.raw_label.clone(), w.speaker.clone(), w.segment, w.split)).collect();
            assert_eq!(
                rows,
                [("a.wav".into(), "sad".into(), Some("s1".into()), Some([0.5, 1.5]), Some(RowSplit::Test)), ("b.wav".into(), "happy".into(), Some("s2".into()), None, Some(RowSplit::Train))],
                "{name}"
            );
            assert_eq!(r.rows[0].file, dir.join("a.wav"));
            assert_eq!(r.skipped.len(), 1, "{name}: {:?}", r.skipped);
            assert!(r.skipped[0].0.ends_with("line 4") || r.skipped[0].0.ends_with("line 3"), "{:?}", r.skipped);
        }
        for (name, text, fault) in [
            ("bad.csv", "path,label,start,end\na.wav,sad,2,1\n", "line 2: start 2 is not before end 1"),
            ("half.csv", "path,label,start\na.wav,sad,1\n", "line 2: a segment needs both start and end"),
            ("negative.csv", "path,label,start,end\na.wav,sad,-1,2\n", "line 2: start \"-1\" is not a time in seconds"),
            ("endless.csv", "path,label,start,end\na.wav,sad,0,inf\n", "line 2: end \"inf\" is not a time in seconds"),
            ("nolabel.csv", "path,speaker\na.wav,s1\n", "no label column"),
            ("nopath.jsonl", "{\"emo\":\"sad\"}\n", "no path column"),
            ("split.csv", "path,label,split\na.wav,sad,holdout\n", "line 2: split \"holdout\""),
            ("m.txt", "path,label\na.wav,sad\n", "a manifest is .csv, .tsv or .jsonl"),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            let Err(e) = read(&path) else { panic!("{name} read") };
            assert!(e.to_string().contains(fault), "{name}: {e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
