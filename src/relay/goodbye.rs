//! Fallback goodbye detection: configurable farewell phrases matched on the end of a transcript.
//!
//! The primary way a call ends is the `end_call` function tool the model calls. When the model does not call it, the
//! bridge asks a [`GoodbyeMatcher`] whether the last sentence of a transcript (the caller's
//! `conversation.item.input_audio_transcription.completed` or the assistant's `response.output_audio_transcript.done`)
//! says goodbye, and if so ends the call once the assistant's reply has played.
//!
//! Matching is on whole words: case-insensitive (Unicode lowercase), accent-insensitive (so "adiós" and "adios" both
//! match), with punctuation as word breaks. Only the last sentence counts, and a question never counts: "Say goodbye to
//! long queues. How can I help?" is not a farewell. Words that greet as well as part ("ciao") count only when they end
//! the sentence: "Va bene, ciao!" is a farewell, "Ciao, vorrei prenotare un tavolo." is not.

use crate::config::DEFAULT_GOODBYE_PHRASES;

/// One-word phrases that greet as well as part: as a whole phrase they count only at the end of the last sentence.
const GREETING_FAREWELLS: &[&str] = &[
    "ciao", "chao", "chau", "salut", "servus", "hallo", "hola", "aloha", "shalom",
];

/// Abbreviations whose trailing period does not end a sentence ("Goodbye, Mr. Smith.").
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "st", "sr", "sra", "srta", "mme", "mlle", "hr", "fr", "sig",
    "dott",
];

/// One configured phrase, kept as written (for logs) and as normalised words (for matching).
#[derive(Debug, Clone)]
struct Phrase {
    /// The phrase as configured.
    text: String,
    /// Its normalised words, never empty.
    words: Vec<String>,
    /// True for a word in [`GREETING_FAREWELLS`]: it matches only as the last word of the sentence.
    only_at_end: bool,
}

impl Phrase {
    /// True when `sentence_words` contain this phrase as a run of whole words (at their end if `only_at_end`).
    fn matches(&self, sentence_words: &[String]) -> bool {
        if self.only_at_end {
            sentence_words.ends_with(&self.words)
        } else {
            sentence_words
                .windows(self.words.len())
                .any(|window| window == self.words.as_slice())
        }
    }
}

/// Decides whether a transcript ends with a farewell.
///
/// Built from a list of phrases ([`DEFAULT_GOODBYE_PHRASES`] or a configured list); each phrase matches as a
/// run of whole words.
#[derive(Debug, Clone)]
pub struct GoodbyeMatcher {
    /// The phrases with at least one word; phrases made only of punctuation are dropped at construction. Shared: every
    /// call holds the server's matcher, and a clone is a reference count, not a copy of every phrase.
    phrases: std::sync::Arc<[Phrase]>,
}

impl Default for GoodbyeMatcher {
    /// A matcher over [`DEFAULT_GOODBYE_PHRASES`].
    fn default() -> Self {
        Self::new(DEFAULT_GOODBYE_PHRASES)
    }
}

impl GoodbyeMatcher {
    /// A matcher over `phrases`. Each phrase is normalised like transcripts are (lowercase, accents folded, punctuation
    /// as word breaks); phrases with no word at all are ignored, so an empty list matches nothing.
    pub fn new(phrases: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        let phrases = phrases
            .into_iter()
            .filter_map(|phrase| {
                let text = phrase.as_ref();
                let words = words(text);
                let only_at_end =
                    matches!(words.as_slice(), [word] if GREETING_FAREWELLS.contains(&word.as_str()));
                (!words.is_empty()).then(|| Phrase {
                    text: text.to_owned(),
                    words,
                    only_at_end,
                })
            })
            .collect();
        Self { phrases }
    }

    /// True when the last sentence of `transcript` contains a configured phrase as whole words and is not a question.
    ///
    /// "Thanks, goodbye!" and "Bye-bye" are farewells; "Say goodbye to long queues. How can I help?", "maybe" and
    /// "Do you want to say goodbye?" are not. A word that also greets ("ciao") counts only as the sentence's last word.
    /// Empty or blank input is not a farewell.
    pub fn is_farewell(&self, transcript: &str) -> bool {
        self.farewell_phrase(transcript).is_some()
    }

    /// The configured phrase (as written) that makes `transcript` a farewell, if any; see
    /// [`is_farewell`](Self::is_farewell). Useful for logging why a call ended.
    pub fn farewell_phrase(&self, transcript: &str) -> Option<&str> {
        let sentence = last_sentence(transcript)?;
        if is_question(sentence) {
            return None;
        }
        let sentence_words = words(sentence);
        self.phrases
            .iter()
            .find(|phrase| phrase.matches(&sentence_words))
            .map(|phrase| phrase.text.as_str())
    }
}

/// True for characters that can end a sentence.
fn is_sentence_end(character: char) -> bool {
    matches!(character, '.' | '!' | '?' | '…' | '。' | '！' | '？')
}

/// True when `sentence` ends with a question mark (ignoring trailing whitespace and closing quotes or brackets).
fn is_question(sentence: &str) -> bool {
    sentence
        .trim_end_matches(|character: char| {
            character.is_whitespace() || matches!(character, '"' | '\'' | ')' | '»' | '”' | '’')
        })
        .ends_with(['?', '？'])
}

/// The last sentence of `text` that holds at least one word, with its terminator; `None` when there is no word.
///
/// A period ends a sentence only when followed by whitespace, another terminator or the end of the text (so "3.5" and
/// "example.com" do not split) and not after an abbreviation or a single letter ("Mr.", "J.").
fn last_sentence(text: &str) -> Option<&str> {
    let mut last_with_words = None;
    let mut start = 0;
    let mut characters = text.char_indices().peekable();
    while let Some((index, character)) = characters.next() {
        if !is_sentence_end(character) {
            continue;
        }
        let next = characters.peek().map(|&(_, next)| next);
        if character == '.'
            && (next.is_some_and(|next| !next.is_whitespace() && !is_sentence_end(next))
                || ends_with_abbreviation(&text[start..index]))
        {
            continue;
        }
        let end = index + character.len_utf8();
        let sentence = &text[start..end];
        if has_word(sentence) {
            last_with_words = Some(sentence);
        }
        start = end;
    }
    let rest = &text[start..];
    if has_word(rest) {
        last_with_words = Some(rest);
    }
    last_with_words
}

/// True when `text` holds at least one letter or digit.
fn has_word(text: &str) -> bool {
    text.chars().any(char::is_alphanumeric)
}

/// True when the last word of `text` is a known abbreviation or a single letter.
fn ends_with_abbreviation(text: &str) -> bool {
    let last_word: String = text
        .chars()
        .rev()
        .take_while(|character| character.is_alphanumeric())
        .collect();
    let last_word: String = last_word.chars().rev().collect();
    if last_word.is_empty() {
        return false;
    }
    let normalised = words(&last_word).concat();
    normalised.chars().count() == 1 && normalised.chars().all(char::is_alphabetic)
        || ABBREVIATIONS.contains(&normalised.as_str())
}

/// The normalised words of `text`: Unicode lowercase, accents folded, split at every character that is not a letter
/// or digit.
fn words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    for character in text.chars().flat_map(char::to_lowercase) {
        if is_combining_mark(character) {
            continue;
        }
        if character.is_alphanumeric() {
            push_folded(&mut word, character);
        } else if !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// True for combining diacritical marks (U+0300–U+036F), as found in decomposed text ("e" + U+0301).
fn is_combining_mark(character: char) -> bool {
    ('\u{300}'..='\u{36f}').contains(&character)
}

/// Appends lowercase `character` with its accent removed (Latin letters used by the default languages and their
/// neighbours); other characters are appended as they are.
fn push_folded(word: &mut String, character: char) {
    let folded = match character {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => "c",
        'ď' | 'đ' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => "e",
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => "g",
        'ĥ' | 'ħ' => "h",
        'ì' | 'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => "i",
        'ĵ' => "j",
        'ķ' => "k",
        'ĺ' | 'ļ' | 'ľ' | 'ŀ' | 'ł' => "l",
        'ñ' | 'ń' | 'ņ' | 'ň' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ŏ' | 'ő' => "o",
        'ŕ' | 'ŗ' | 'ř' => "r",
        'ś' | 'ŝ' | 'ş' | 'š' | 'ș' => "s",
        'ţ' | 'ť' | 'ŧ' | 'ț' => "t",
        'ù' | 'ú' | 'û' | 'ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => "u",
        'ŵ' => "w",
        'ý' | 'ÿ' | 'ŷ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        'ß' => "ss",
        'æ' => "ae",
        'œ' => "oe",
        other => {
            word.push(other);
            return;
        }
    };
    word.push_str(folded);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn farewells_in_every_default_language_are_detected() {
        let matcher = GoodbyeMatcher::default();
        let farewells = [
            "Thanks, goodbye!",
            "Okay, bye.",
            "Bye bye!",
            "Bye-bye",
            "byebye",
            "Alright. Have a nice day!",
            "Thank you, good bye",
            "Gracias, adiós.",
            "Gracias, adios",
            "ADIÓS",
            "Muy bien, hasta luego.",
            "Merci beaucoup, au revoir !",
            "Parfait, à bientôt.",
            "Bonne journée !",
            "Danke, auf Wiedersehen.",
            "Vielen Dank, auf Wiederhören!",
            "Tschüss!",
            "TSCHÜß",
            "Grazie mille, arrivederci.",
            "Va bene, ciao!",
            "Obrigado, tchau.",
            "Até logo!",
            "Dank je wel, tot ziens.",
            "Doei!",
        ];

        for transcript in farewells {
            let is_farewell = matcher.is_farewell(transcript);

            assert!(is_farewell, "{transcript:?} should be a farewell");
        }
    }

    #[test]
    fn non_farewells_are_not_detected() {
        let matcher = GoodbyeMatcher::default();
        let not_farewells = [
            "Say goodbye to long queues. How can I help?",
            "Goodbye! Oh wait, one more thing: can you book for four people",
            "Maybe tomorrow.",
            "The byelaw says no.",
            "Standby, please.",
            "Do you want to say goodbye?",
            "¿Quieres decir adiós?",
            "I'll take care of it.",
            "Hello, this is Marco calling about a reservation.",
            "Goodbye, and thanks. Actually I have another question",
        ];

        for transcript in not_farewells {
            let is_farewell = matcher.is_farewell(transcript);

            assert!(!is_farewell, "{transcript:?} should not be a farewell");
        }
    }

    #[test]
    fn empty_and_blank_transcripts_are_not_farewells() {
        let matcher = GoodbyeMatcher::default();

        for transcript in ["", "   ", "\n\t", "...", "?!", " . "] {
            assert!(!matcher.is_farewell(transcript), "{transcript:?}");
        }
    }

    #[test]
    fn only_the_last_sentence_with_words_counts() {
        let matcher = GoodbyeMatcher::default();

        assert!(matcher.is_farewell("Your table is booked for eight. Goodbye! :)"));
        assert!(!matcher.is_farewell("Goodbye is a word. Your table is booked for eight."));
    }

    #[test]
    fn abbreviations_and_decimals_do_not_end_the_last_sentence() {
        let matcher = GoodbyeMatcher::default();

        assert!(matcher.is_farewell("Goodbye, Mr. Smith."));
        assert!(matcher.is_farewell("Goodbye from J. Doe."));
        assert!(!matcher.is_farewell("Goodbye. The total is 3.5 euros"));
    }

    #[test]
    fn decomposed_accents_match_like_composed_ones() {
        let matcher = GoodbyeMatcher::new(["adiós"]);

        assert!(matcher.is_farewell("adio\u{301}s"));
        assert!(matcher.is_farewell("ADIOS"));
    }

    #[test]
    fn a_word_that_also_greets_counts_only_at_the_end_of_the_sentence() {
        let matcher = GoodbyeMatcher::default();

        assert!(matcher.is_farewell("Va bene, grazie, ciao!"));
        assert!(matcher.is_farewell("Ciao ciao."));
        assert!(!matcher.is_farewell("Ciao, vorrei prenotare un tavolo per due."));
        assert!(!matcher.is_farewell("Chau, te llamo por la reserva."));
    }

    #[test]
    fn a_multi_word_phrase_with_a_greeting_word_matches_anywhere() {
        let matcher = GoodbyeMatcher::new(["ciao ciao"]);

        assert!(matcher.is_farewell("Ciao ciao, a domani."));
    }

    #[test]
    fn custom_phrases_replace_the_defaults() {
        let matcher = GoodbyeMatcher::new(["that is all", "over and out"]);

        assert!(matcher.is_farewell("Okay, that is all."));
        assert!(matcher.is_farewell("Over-and-out!"));
        assert!(!matcher.is_farewell("Goodbye!"));
        assert_eq!(
            matcher.farewell_phrase("Over and out."),
            Some("over and out")
        );
    }

    #[test]
    fn phrases_without_words_are_ignored_and_an_empty_list_matches_nothing() {
        let blank = GoodbyeMatcher::new(["", "  ", "!!"]);
        let empty = GoodbyeMatcher::new(Vec::<String>::new());

        assert!(!blank.is_farewell("Goodbye!"));
        assert!(!blank.is_farewell(""));
        assert!(!empty.is_farewell("Goodbye!"));
    }

    #[test]
    fn default_phrases_cover_the_seven_languages() {
        let phrases = DEFAULT_GOODBYE_PHRASES;

        for phrase in [
            "goodbye",
            "adiós",
            "au revoir",
            "auf wiedersehen",
            "arrivederci",
            "tchau",
            "tot ziens",
        ] {
            assert!(phrases.contains(&phrase), "{phrase}");
        }
    }

    #[test]
    fn farewell_phrase_names_the_phrase_that_matched() {
        let matcher = GoodbyeMatcher::default();

        assert_eq!(
            matcher.farewell_phrase("Merci, au revoir."),
            Some("au revoir")
        );
        assert_eq!(matcher.farewell_phrase("How can I help?"), None);
    }

    proptest! {
        #[test]
        fn matching_never_panics_on_any_input(transcript in any::<String>(), phrase in any::<String>()) {
            let matcher = GoodbyeMatcher::new([phrase]);

            let _ = matcher.is_farewell(&transcript);
            let _ = GoodbyeMatcher::default().is_farewell(&transcript);
        }

        #[test]
        fn a_phrase_always_matches_itself_as_a_sentence(phrase in "[a-zà-öø-ÿ]{1,8}( [a-zà-öø-ÿ]{1,8}){0,2}") {
            let matcher = GoodbyeMatcher::new([&phrase]);

            let transcript = format!("Well, {phrase}!");

            prop_assert!(matcher.is_farewell(&transcript));
        }

        #[test]
        fn a_farewell_followed_by_a_question_is_never_a_farewell(question in "[A-Za-z]{1,10}( [A-Za-z]{1,10}){0,4}") {
            let matcher = GoodbyeMatcher::default();

            let transcript = format!("Goodbye. {question}?");

            prop_assert!(!matcher.is_farewell(&transcript));
        }
    }
}
