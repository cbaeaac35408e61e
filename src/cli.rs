//! What the examples share on the command line: clap parsing with errors on one line, value
//! parsers for sizes, and the exit convention (one `error: …` line and a non-zero status).

use std::ffi::OsString;
use std::fmt::Display;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgMatches, Parser};

/// Parses the command line into `T`. `--help` prints clap's help and exits 0; a bad flag or
/// value is an error of one line.
pub fn parse<T: Parser>() -> Result<T, String> {
    parse_from(std::env::args_os()).map(|(args, _)| args)
}

/// [`parse`] over any argument list (the program name first), with clap's matches, which tell
/// the flags given on the command line from defaults ([`given`]).
pub fn parse_from<T: Parser>(
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
) -> Result<(T, ArgMatches), String> {
    let matches = T::command().try_get_matches_from(args).map_err(one_line)?;
    let parsed = T::from_arg_matches(&matches).map_err(one_line)?;
    Ok((parsed, matches))
}

/// Whether the argument `id` (a field name) was given on the command line.
pub fn given(matches: &ArgMatches, id: &str) -> bool {
    matches.value_source(id) == Some(ValueSource::CommandLine)
}

/// clap's error as one line (without its usage block and tips); `--help` and `--version` are
/// printed and exit 0 here.
fn one_line(e: clap::Error) -> String {
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        std::process::exit(0);
    }
    // The message is the text above clap's "Usage:" block, less its tips.
    let text = e.render().to_string();
    let message: Vec<&str> = text
        .lines()
        .take_while(|l| !l.starts_with("Usage:"))
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
        .collect();
    let message = message.join(" ");
    format!("{} (try --help)", message.trim_start_matches("error: "))
}

/// A `HEIGHTxWIDTH` value (e.g. `180x240`), each side 1 to
/// [`MAX_IMAGE_SIDE`](squeeze_segnet_data::MAX_IMAGE_SIDE): a clap value parser.
pub fn size(v: &str) -> Result<[usize; 2], String> {
    let max = squeeze_segnet_data::MAX_IMAGE_SIDE as usize;
    let size: [usize; 2] = v
        .split_once(['x', 'X'])
        .and_then(|(h, w)| Some([h.trim().parse().ok()?, w.trim().parse().ok()?]))
        .ok_or(format!("'{v}' is not HEIGHTxWIDTH, e.g. 180x240"))?;
    if size.iter().any(|&s| s == 0 || s > max) {
        return Err(format!("{v}: each side must be 1 to {max}"));
    }
    Ok(size)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A flag table as the examples declare theirs.
    #[derive(Parser, Debug)]
    struct Demo {
        /// Model resolution.
        #[arg(long, value_parser = size)]
        size: Option<[usize; 2]>,
        /// Passes over the data.
        #[arg(long, default_value_t = 30)]
        epochs: usize,
        /// Images.
        files: Vec<String>,
        /// Needs --size.
        #[arg(long, requires = "size")]
        need: bool,
    }

    #[test]
    fn values_defaults_and_given_flags() {
        let (d, m) = parse_from::<Demo>(["demo", "--size", "90X120", "a.png"]).unwrap();
        assert_eq!(
            (d.size, d.epochs, d.files),
            (Some([90, 120]), 30, vec!["a.png".into()])
        );
        assert!(given(&m, "size") && !given(&m, "epochs"));
        let (d, m) = parse_from::<Demo>(["demo", "--epochs=3"]).unwrap();
        assert_eq!((d.size, d.epochs), (None, 3));
        assert!(given(&m, "epochs") && !given(&m, "size"));
    }

    #[test]
    fn errors_are_one_line_naming_the_flag_and_value() {
        for (args, needle) in [
            (vec!["demo", "--bogus"], "unexpected argument '--bogus'"),
            (vec!["demo", "--size", "big"], "'big' is not HEIGHTxWIDTH"),
            (vec!["demo", "--size", "0x5"], "each side must be 1 to"),
            (
                vec!["demo", "--epochs", "x"],
                "invalid value 'x' for '--epochs <EPOCHS>'",
            ),
            (vec!["demo", "--epochs", "-1"], "'-1'"),
            (vec!["demo", "--size"], "--size"),
            (
                vec!["demo", "--need"],
                "required arguments were not provided: --size",
            ),
        ] {
            let err = parse_from::<Demo>(args.clone()).unwrap_err();
            assert!(
                err.contains(needle) && !err.contains('\n'),
                "{args:?}: {err}"
            );
        }
    }
}
