//! Command-line values that are the model's own enums (`Mode`, `ReportKind`): clap
//! offers exactly their words, with a line of help each, in `--help`, in errors and in
//! shell completions, and hands the model's value to the command. zwctl keeps no
//! copy of these enums.

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};

/// A parser for one of `all`, written as its `word`, each explained by `help`.
pub fn parser<M>(
    all: &'static [M],
    word: fn(M) -> &'static str,
    help: fn(M) -> &'static str,
) -> impl TypedValueParser<Value = M>
where
    M: Copy + Send + Sync + 'static,
{
    PossibleValuesParser::new(
        all.iter()
            .map(move |&value| PossibleValue::new(word(value)).help(help(value))),
    )
    .try_map(move |text: String| {
        all.iter()
            .copied()
            .find(|&value| word(value) == text)
            .ok_or_else(|| format!("{text:?} is none of the possible values"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use zonewarden_profiles::Mode;

    #[test]
    fn offers_the_model_words_and_yields_the_model_value() {
        let parser = parser(&Mode::ALL, Mode::as_str, |_| "help");
        let words: Vec<String> = parser
            .possible_values()
            .expect("possible values for help and completions")
            .map(|v| v.get_name().to_owned())
            .collect();
        assert_eq!(words, ["learn", "monitor", "enforce"]);
        let cmd = clap::Command::new("t");
        let parsed = parser
            .parse_ref(&cmd, None, std::ffi::OsStr::new("monitor"))
            .unwrap();
        assert_eq!(parsed, Mode::Monitor);
        assert!(
            parser
                .parse_ref(&cmd, None, std::ffi::OsStr::new("block"))
                .is_err()
        );
    }
}
