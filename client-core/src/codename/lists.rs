//! The codename word lists, one per language, and how typed words are
//! matched against them (docs/PROTOCOL.md §5.1).
//!
//! | language | list | words | source |
//! |---|---|---|---|
//! | en | EFF large list | 7776 | `diceware_wordlists::EFF_LONG_WORDLIST` |
//! | es | BIP-39 Spanish | 2048 | bitcoin/bips `bip-0039/spanish.txt`, stored in NFC |
//! | fr | BIP-39 French | 2048 | bitcoin/bips `bip-0039/french.txt`, stored in NFC |
//! | ht | Northstar Kreyòl list | 2048 | `lists/ht.txt`: chosen from the CreoleNLTK lexicon (MIT), PROTOCOL.md §5.1 says how |
//!
//! Matching folds case and diacritics (`ábaco`, `abaco`, `ABACO` and the
//! decomposed `a\u{301}baco` are one word): every list is unique once
//! folded (tested), so folding never merges two words.

use std::sync::OnceLock;

use diceware_wordlists::EFF_LONG_WORDLIST;

use crate::ids::Language;

const ES: &str = include_str!("lists/es.txt");
const FR: &str = include_str!("lists/fr.txt");
const HT: &str = include_str!("lists/ht.txt");

/// One language's list: the words in list order (index = position) and a
/// folded index for lookups.
pub(super) struct WordList {
    words: Vec<&'static str>,
    /// (folded word, index), sorted by folded word.
    folded: Vec<(String, u16)>,
}

impl WordList {
    fn new(words: Vec<&'static str>) -> Self {
        let mut folded: Vec<(String, u16)> = words
            .iter()
            .enumerate()
            .map(|(i, w)| (fold(w), u16::try_from(i).unwrap_or(u16::MAX)))
            .collect();
        folded.sort();
        WordList { words, folded }
    }

    /// How many words the list holds.
    pub(super) fn len(&self) -> usize {
        self.words.len()
    }

    /// The word at `index`, in the list's spelling ("" past the end, which
    /// no codename holds).
    pub(super) fn word(&self, index: u16) -> &'static str {
        self.words.get(usize::from(index)).copied().unwrap_or("")
    }

    /// The index of an already folded token, if it is a list word.
    pub(super) fn lookup(&self, folded: &str) -> Option<u16> {
        self.folded
            .binary_search_by(|(w, _)| w.as_str().cmp(folded))
            .ok()
            .map(|i| self.folded[i].1)
    }
}

/// The list of `language`.
pub(super) fn list(language: Language) -> &'static WordList {
    static LISTS: OnceLock<[WordList; 4]> = OnceLock::new();
    let lists = LISTS.get_or_init(|| {
        let lines = |s: &'static str| s.lines().filter(|l| !l.is_empty()).collect::<Vec<_>>();
        [
            WordList::new(EFF_LONG_WORDLIST.to_vec()),
            WordList::new(lines(ES)),
            WordList::new(lines(FR)),
            WordList::new(lines(HT)),
        ]
    });
    match language {
        Language::En => &lists[0],
        Language::Es => &lists[1],
        Language::Fr => &lists[2],
        Language::Ht => &lists[3],
    }
}

/// Lower-cases and removes diacritics: combining marks (U+0300–U+036F) are
/// dropped and the precomposed Latin letters the lists use (and their
/// neighbours) become their base letter. Everything else is kept as is.
pub(super) fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().flat_map(char::to_lowercase) {
        if ('\u{300}'..='\u{36f}').contains(&c) {
            continue;
        }
        out.push(base_letter(c));
    }
    out
}

fn base_letter(c: char) -> char {
    match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => 'a',
        'ç' => 'c',
        'è' | 'é' | 'ê' | 'ë' => 'e',
        'ì' | 'í' | 'î' | 'ï' => 'i',
        'ñ' => 'n',
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' => 'o',
        'ù' | 'ú' | 'û' | 'ü' => 'u',
        'ý' | 'ÿ' => 'y',
        other => other,
    }
}
