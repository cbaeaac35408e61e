//! A tiny flag parser for the examples: `--name value` and `--switch` flags, positional
//! arguments, `--help` generated from the flag list, and one-line errors with a non-zero exit.

use std::collections::HashMap;
use std::fmt::Display;
use std::process::ExitCode;
use std::str::FromStr;

/// One flag: `--name METAVAR` (takes a value) or `--name` (a switch when `metavar` is `None`).
pub struct Flag {
    /// Name without dashes.
    pub name: &'static str,
    /// Placeholder of its value in `--help`, or `None` for a switch.
    pub metavar: Option<&'static str>,
    /// One line of help.
    pub help: &'static str,
}

/// Shorthand for a [`Flag`] taking a value.
pub const fn opt(name: &'static str, metavar: &'static str, help: &'static str) -> Flag {
    Flag {
        name,
        metavar: Some(metavar),
        help,
    }
}

/// Shorthand for a switch [`Flag`].
pub const fn switch(name: &'static str, help: &'static str) -> Flag {
    Flag {
        name,
        metavar: None,
        help,
    }
}

/// Parsed arguments.
#[derive(Debug, Default)]
pub struct Args {
    values: HashMap<&'static str, String>,
    /// Positional arguments, in order.
    pub positional: Vec<String>,
}

impl Args {
    /// Whether `--name` was given.
    pub fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// The raw value of `--name`.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// `--name` parsed as `T`; an error names the flag and the bad value.
    pub fn get<T: FromStr>(&self, name: &str) -> Result<Option<T>, String>
    where
        T::Err: Display,
    {
        self.raw(name)
            .map(|v| {
                v.parse::<T>()
                    .map_err(|e| format!("--{name}: '{v}' is not valid ({e})"))
            })
            .transpose()
    }

    /// `--name` as `HxW` (e.g. `180x240`).
    /// `--name HxW`, each side in `1..=MAX_IMAGE_SIDE` (8192).
    pub fn size(&self, name: &str) -> Result<Option<[usize; 2]>, String> {
        let max = squeeze_segnet_data::MAX_IMAGE_SIDE as usize;
        self.raw(name)
            .map(|v| {
                let size: [usize; 2] = v
                    .split_once(['x', 'X'])
                    .and_then(|(h, w)| Some([h.trim().parse().ok()?, w.trim().parse().ok()?]))
                    .ok_or(format!("--{name}: '{v}' is not HEIGHTxWIDTH, e.g. 180x240"))?;
                if size.iter().any(|&s| s == 0 || s > max) {
                    return Err(format!("--{name}: {v}: each side must be 1 to {max}"));
                }
                Ok(size)
            })
            .transpose()
    }
}

/// Parses `std::env::args()`; `--help` prints `about`, the usage and the flags, then exits 0.
pub fn parse(
    program: &str,
    about: &str,
    flags: &[Flag],
    positional: Option<&str>,
) -> Result<Args, String> {
    parse_from(program, about, flags, positional, std::env::args().skip(1))
}

/// [`parse`] over any argument list (for tests).
pub fn parse_from(
    program: &str,
    about: &str,
    flags: &[Flag],
    positional: Option<&str>,
    args: impl IntoIterator<Item = String>,
) -> Result<Args, String> {
    let mut out = Args::default();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        if arg == "-h" || arg == "--help" {
            println!("{}", help(program, about, flags, positional));
            std::process::exit(0);
        }
        let Some(name) = arg.strip_prefix("--") else {
            if positional.is_none() {
                return Err(format!("unexpected argument '{arg}' (try --help)"));
            }
            out.positional.push(arg);
            continue;
        };
        let (name, inline) = match name.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (name, None),
        };
        let flag = flags
            .iter()
            .find(|f| f.name == name)
            .ok_or(format!("unknown flag '--{name}' (try --help)"))?;
        let value = match (flag.metavar, inline) {
            (None, None) => String::new(),
            (None, Some(_)) => return Err(format!("--{name} takes no value")),
            (Some(_), Some(v)) => v,
            (Some(m), None) => it
                .next()
                .filter(|v| !v.starts_with("--"))
                .ok_or(format!("--{name} needs a value ({m})"))?,
        };
        out.values.insert(flag.name, value);
    }
    Ok(out)
}

/// The `--help` text.
pub fn help(program: &str, about: &str, flags: &[Flag], positional: Option<&str>) -> String {
    let mut s = format!("{about}\n\nusage: {program} [flags]");
    if let Some(p) = positional {
        s.push_str(&format!(" {p}"));
    }
    s.push_str("\n\nflags:\n");
    for f in flags {
        let left = match f.metavar {
            Some(m) => format!("--{} {m}", f.name),
            None => format!("--{}", f.name),
        };
        s.push_str(&format!("  {left:<24} {}\n", f.help));
    }
    s.push_str(&format!("  {:<24} this help\n", "-h, --help"));
    s
}

/// Prints `error: …` on one line and returns exit code 1, or returns success.
pub fn exit<E: Display>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
