//! Intake questions and answers (docs/PROTOCOL.md §5.3 "Intake questions"
//! and §4 "Application messages", `Opening`).
//!
//! The administrator defines a short, optional set of structured questions
//! in the signed directory: one catalog of [`Question`]s for the whole
//! organisation, and per team the ordered list of the catalog's question
//! ids its seekers are asked ([`crate::directory::Team::questions`]). A
//! catalog keeps the directory small: the six default topics share the
//! six default questions instead of carrying six copies of each.
//!
//! Every question has its wording twice in the four client languages: once
//! addressed to the person themself, once to someone writing for another
//! person ("the person you are helping"). The [`Meaning::ForWhom`] question
//! comes first and switches the wording of the rest. A question also
//! carries a machine-readable [`Meaning`], so that clients sort and filter
//! (minors first, urgent first, writing for someone else) without parsing
//! any text.
//!
//! The seeker's [`IntakeAnswers`] travel inside the ciphertext, in the
//! [`crate::message::Body::Opening`]; a skipped question is simply absent,
//! and "prefer not to say" is an explicit [`Answer::Declined`]. The
//! questions themselves are **public** (the directory is): their wording
//! must never be something that is itself sensitive to ask.
//!
//! A counselor device keeps the answers with the conversation and reads them
//! against the directory it holds ([`summarize`]): an answer that names a
//! question the directory no longer has, or does not fit its question (a
//! choice it does not offer, a yes/no to a choice question), is shown as
//! unrecognised and never used for sorting or filtering.

use core::fmt;
use std::collections::BTreeSet;

use crate::error::{DecodeError, Error};
use crate::ids::Language;
use crate::message::MessageText;
use crate::wire::{Reader, Writer};

/// Most questions in the organisation's catalog: the six default questions
/// and room for as many again; each question costs up to
/// [`MAX_QUESTION_LEN`] bytes of directory.
pub const MAX_QUESTIONS: usize = 12;
/// Most questions one team asks: a short screen on a phone, before the
/// free text, for a person who may be frightened.
pub const MAX_QUESTIONS_PER_TEAM: usize = 8;
/// Most choices of one question (a short list, e.g. citizenships and "other").
pub const MAX_CHOICES: usize = 10;
/// Longest question wording in one language, UTF-8 bytes (two lines on a phone).
pub const MAX_PROMPT_LEN: usize = 200;
/// Longest choice label in one language, UTF-8 bytes.
pub const MAX_CHOICE_LABEL_LEN: usize = 64;
/// Longest short free-text answer, UTF-8 bytes (a word or a line, such as a
/// citizenship not in the list; the story itself goes in the message text).
pub const MAX_SHORT_ANSWER_LEN: usize = 200;
/// Most answers in one opening: one per question a team asks.
pub const MAX_ANSWERS: usize = MAX_QUESTIONS_PER_TEAM;

/// The largest encoded [`Question`] (checked against the directory's
/// maximum in `directory.rs`).
pub const MAX_QUESTION_LEN: usize =
    2 + 1 + 1 + 8 * (2 + MAX_PROMPT_LEN) + 2 + MAX_CHOICES * (1 + 4 * (2 + MAX_CHOICE_LABEL_LEN));

/// The largest encoded [`IntakeAnswers`] (a text answer is the largest).
pub const MAX_ANSWERS_LEN: usize = 2 + MAX_ANSWERS * (2 + 1 + 2 + MAX_SHORT_ANSWER_LEN);

/// For a [`Meaning::ForWhom`] question: the choice "myself".
pub const FOR_WHOM_SELF: u8 = 1;
/// For a [`Meaning::ForWhom`] question: the choice "someone else" (a
/// lawyer, a social worker, a friend writing on another person's behalf).
pub const FOR_WHOM_SOMEONE_ELSE: u8 = 2;
/// For a [`Meaning::Citizenship`] question: the choice "U.S." (U.S.
/// citizens have other options; counselors filter on it).
pub const CITIZENSHIP_US: u8 = 1;
/// For a [`Meaning::AsylumElsewhere`] question: the choice "none of these"
/// (every other choice is a country where asylum was already asked).
pub const ASYLUM_NONE: u8 = 0;
/// For a [`Meaning::Location`] question: "already in Canada".
pub const LOCATION_IN_CANADA: u8 = 3;

/// A question's id: stable across directory versions, unique in the catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QuestionId(pub u16);

/// What a question is for, so that clients can sort and filter on it
/// without reading its wording.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Meaning {
    /// Nothing a client acts on: shown to counselors only.
    Other = 0,
    /// Who the person writes for: a single choice of exactly
    /// [`FOR_WHOM_SELF`] and [`FOR_WHOM_SOMEONE_ELSE`]; first in its team.
    ForWhom = 1,
    /// 18 or under and in the U.S. without a parent, guardian or custodian: yes/no.
    Minor = 2,
    /// Asylum already asked in the U.S., the U.K., Australia or New Zealand:
    /// a multiple choice of countries, [`ASYLUM_NONE`] for none.
    AsylumElsewhere = 3,
    /// Citizenship(s): a multiple choice, [`CITIZENSHIP_US`] for the U.S.
    Citizenship = 4,
    /// Where the person is (near or at the border, in Canada): a single choice.
    Location = 5,
    /// How urgent: a single choice whose choice id is the level (higher is
    /// more urgent; the highest level the question offers is "urgent").
    Urgency = 6,
}

impl Meaning {
    fn from_wire(tag: u8) -> Result<Self, DecodeError> {
        Ok(match tag {
            0 => Meaning::Other,
            1 => Meaning::ForWhom,
            2 => Meaning::Minor,
            3 => Meaning::AsylumElsewhere,
            4 => Meaning::Citizenship,
            5 => Meaning::Location,
            6 => Meaning::Urgency,
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "question meaning",
                    tag,
                });
            }
        })
    }

    /// A short stable name ("for_whom", "minor", …) for scripts and pages.
    pub fn name(self) -> &'static str {
        match self {
            Meaning::Other => "other",
            Meaning::ForWhom => "for_whom",
            Meaning::Minor => "minor",
            Meaning::AsylumElsewhere => "asylum_elsewhere",
            Meaning::Citizenship => "citizenship",
            Meaning::Location => "location",
            Meaning::Urgency => "urgency",
        }
    }

    /// Parses [`Meaning::name`].
    pub fn from_name(name: &str) -> Option<Meaning> {
        (0..=6)
            .filter_map(|t| Meaning::from_wire(t).ok())
            .find(|m| m.name() == name)
    }
}

/// How a question is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum QuestionKind {
    /// Yes or no (no choices).
    YesNo = 1,
    /// One of the choices.
    Single = 2,
    /// Any of the choices (at least one).
    Multiple = 3,
    /// A short line of text, at most [`MAX_SHORT_ANSWER_LEN`] bytes (no choices).
    ShortText = 4,
}

impl QuestionKind {
    fn from_wire(tag: u8) -> Result<Self, DecodeError> {
        Ok(match tag {
            1 => QuestionKind::YesNo,
            2 => QuestionKind::Single,
            3 => QuestionKind::Multiple,
            4 => QuestionKind::ShortText,
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "question kind",
                    tag,
                });
            }
        })
    }

    /// "yes_no", "single", "multiple" or "short_text".
    pub fn name(self) -> &'static str {
        match self {
            QuestionKind::YesNo => "yes_no",
            QuestionKind::Single => "single",
            QuestionKind::Multiple => "multiple",
            QuestionKind::ShortText => "short_text",
        }
    }

    /// Parses [`QuestionKind::name`].
    pub fn from_name(name: &str) -> Option<QuestionKind> {
        (1..=4)
            .filter_map(|t| QuestionKind::from_wire(t).ok())
            .find(|k| k.name() == name)
    }
}

/// A text in the four client languages (English required, the others fall
/// back to English when empty).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Localized {
    pub en: String,
    pub es: String,
    pub fr: String,
    pub ht: String,
}

impl Localized {
    /// A text from its four translations.
    pub fn new(en: &str, es: &str, fr: &str, ht: &str) -> Self {
        Localized {
            en: en.to_owned(),
            es: es.to_owned(),
            fr: fr.to_owned(),
            ht: ht.to_owned(),
        }
    }

    /// The text in `lang`, English where no translation is given.
    pub fn get(&self, lang: Language) -> &str {
        let s = match lang {
            Language::En => &self.en,
            Language::Es => &self.es,
            Language::Fr => &self.fr,
            Language::Ht => &self.ht,
        };
        if s.is_empty() { &self.en } else { s }
    }

    pub(crate) fn all(&self) -> [&String; 4] {
        [&self.en, &self.es, &self.fr, &self.ht]
    }

    fn write(&self, w: &mut Writer, max: usize, what: &'static str) -> Result<(), Error> {
        for s in self.all() {
            w.vec_u16(s.as_bytes(), max, what)?;
        }
        Ok(())
    }

    fn read(r: &mut Reader<'_>, max: usize, what: &'static str) -> Result<Self, DecodeError> {
        Ok(Localized {
            en: r.str_u16(max, what)?.to_owned(),
            es: r.str_u16(max, what)?.to_owned(),
            fr: r.str_u16(max, what)?.to_owned(),
            ht: r.str_u16(max, what)?.to_owned(),
        })
    }

    fn valid(&self, max: usize) -> bool {
        !self.en.is_empty() && self.all().iter().all(|s| s.len() <= max)
    }
}

/// One choice of a question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    /// Stable within its question; its meaning for some [`Meaning`]s is
    /// fixed ([`FOR_WHOM_SELF`], [`CITIZENSHIP_US`], urgency levels, …).
    pub id: u8,
    pub label: Localized,
}

/// One intake question of the directory's catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    pub id: QuestionId,
    pub kind: QuestionKind,
    pub meaning: Meaning,
    /// Addressed to the person themself ("Are you 18 or under…?").
    pub prompt: Localized,
    /// Addressed to someone writing for another person ("Is the person you
    /// are helping 18 or under…?").
    pub prompt_other: Localized,
    /// The choices (single and multiple choice only), in display order.
    pub choices: Vec<Choice>,
}

impl Question {
    /// The wording in `lang`, for the person themself or for a helper.
    pub fn prompt(&self, lang: Language, for_someone_else: bool) -> &str {
        if for_someone_else {
            self.prompt_other.get(lang)
        } else {
            self.prompt.get(lang)
        }
    }

    /// The choice with this id.
    pub fn choice(&self, id: u8) -> Option<&Choice> {
        self.choices.iter().find(|c| c.id == id)
    }

    /// Encodes one question.
    ///
    /// ```text
    /// question = id:u16 || kind:u8 || meaning:u8
    ///            || prompt_en:str16 || prompt_es:str16 || prompt_fr:str16 || prompt_ht:str16
    ///            || other_en:str16 || other_es:str16 || other_fr:str16 || other_ht:str16
    ///            || choice_count:u16 || choice*
    /// choice   = id:u8 || label_en:str16 || label_es:str16 || label_fr:str16 || label_ht:str16
    /// ```
    pub(crate) fn write(&self, w: &mut Writer) -> Result<(), Error> {
        w.u16(self.id.0).u8(self.kind as u8).u8(self.meaning as u8);
        self.prompt.write(w, MAX_PROMPT_LEN, "question wording")?;
        self.prompt_other
            .write(w, MAX_PROMPT_LEN, "question wording")?;
        w.count_u16(self.choices.len(), MAX_CHOICES, "choices")?;
        for c in &self.choices {
            w.u8(c.id);
            c.label.write(w, MAX_CHOICE_LABEL_LEN, "choice label")?;
        }
        Ok(())
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let id = QuestionId(r.u16("question id")?);
        let kind = QuestionKind::from_wire(r.u8("question kind")?)?;
        let meaning = Meaning::from_wire(r.u8("question meaning")?)?;
        let prompt = Localized::read(r, MAX_PROMPT_LEN, "question wording")?;
        let prompt_other = Localized::read(r, MAX_PROMPT_LEN, "question wording")?;
        let n = r.count_u16(MAX_CHOICES, "choices")?;
        let mut choices = Vec::with_capacity(n);
        for _ in 0..n {
            choices.push(Choice {
                id: r.u8("choice id")?,
                label: Localized::read(r, MAX_CHOICE_LABEL_LEN, "choice label")?,
            });
        }
        Ok(Question {
            id,
            kind,
            meaning,
            prompt,
            prompt_other,
            choices,
        })
    }

    /// The rules one question follows (see [`validate_catalog`]).
    fn validate(&self) -> Result<(), &'static str> {
        if !self.prompt.valid(MAX_PROMPT_LEN) || !self.prompt_other.valid(MAX_PROMPT_LEN) {
            return Err("question wording (English missing or too long)");
        }
        let with_choices = matches!(self.kind, QuestionKind::Single | QuestionKind::Multiple);
        if with_choices {
            if self.choices.len() < 2 || self.choices.len() > MAX_CHOICES {
                return Err("a choice question needs 2 to MAX_CHOICES choices");
            }
        } else if !self.choices.is_empty() {
            return Err("choices on a question that has none");
        }
        let mut ids = BTreeSet::new();
        for c in &self.choices {
            if !ids.insert(c.id) {
                return Err("duplicate choice id");
            }
            if !c.label.valid(MAX_CHOICE_LABEL_LEN) {
                return Err("choice label (English missing or too long)");
            }
        }
        let ok = match self.meaning {
            Meaning::Other => true,
            Meaning::ForWhom => {
                self.kind == QuestionKind::Single
                    && ids == BTreeSet::from([FOR_WHOM_SELF, FOR_WHOM_SOMEONE_ELSE])
            }
            Meaning::Minor => self.kind == QuestionKind::YesNo,
            Meaning::AsylumElsewhere | Meaning::Citizenship => self.kind == QuestionKind::Multiple,
            Meaning::Location | Meaning::Urgency => self.kind == QuestionKind::Single,
        };
        if !ok {
            return Err("question kind does not fit its meaning");
        }
        Ok(())
    }

    /// The highest level an [`Meaning::Urgency`] question offers.
    fn top_level(&self) -> Option<u8> {
        self.choices.iter().map(|c| c.id).max()
    }
}

/// Checks the organisation's catalog and each team's list of question ids:
/// at most [`MAX_QUESTIONS`], unique ids, each question well formed (kind
/// and choices fit its meaning, wordings within their maxima with an
/// English one), at most [`MAX_QUESTIONS_PER_TEAM`] per team, every id
/// listed by a team in the catalog and listed once, at most one question
/// per meaning (other than [`Meaning::Other`]) in a team, and a
/// [`Meaning::ForWhom`] question first.
pub fn validate_catalog<'a>(
    catalog: &[Question],
    teams: impl IntoIterator<Item = &'a [QuestionId]>,
) -> Result<(), &'static str> {
    if catalog.len() > MAX_QUESTIONS {
        return Err("too many questions");
    }
    let mut ids = BTreeSet::new();
    for q in catalog {
        if !ids.insert(q.id) {
            return Err("duplicate question id");
        }
        q.validate()?;
    }
    for list in teams {
        if list.len() > MAX_QUESTIONS_PER_TEAM {
            return Err("too many questions in a team");
        }
        let mut seen = BTreeSet::new();
        let mut meanings = BTreeSet::new();
        for (i, id) in list.iter().enumerate() {
            if !seen.insert(*id) {
                return Err("question listed twice in a team");
            }
            let q = catalog
                .iter()
                .find(|q| q.id == *id)
                .ok_or("a team lists a question not in the catalog")?;
            if q.meaning != Meaning::Other && !meanings.insert(q.meaning) {
                return Err("two questions with one meaning in a team");
            }
            if q.meaning == Meaning::ForWhom && i != 0 {
                return Err("the for-whom question must come first");
            }
        }
    }
    Ok(())
}

/// One answer. A skipped question has none.
#[derive(Clone, PartialEq, Eq)]
pub enum Answer {
    /// "Prefer not to say": seen, and chosen not to answer.
    Declined,
    /// A yes/no answer.
    YesNo(bool),
    /// A single choice's id.
    Choice(u8),
    /// Multiple choices' ids: at least one, strictly increasing.
    Choices(Vec<u8>),
    /// A short free-text answer (not empty).
    Text(MessageText),
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Answers are as sensitive as the message: no value is printed.
        match self {
            Answer::Declined => f.write_str("Declined"),
            Answer::YesNo(_) => f.write_str("YesNo(..)"),
            Answer::Choice(_) => f.write_str("Choice(..)"),
            Answer::Choices(v) => write!(f, "Choices(n={})", v.len()),
            Answer::Text(t) => write!(f, "Text(len={})", t.len()),
        }
    }
}

mod answer_tag {
    pub const DECLINED: u8 = 0;
    pub const YES_NO: u8 = 1;
    pub const CHOICE: u8 = 2;
    pub const CHOICES: u8 = 3;
    pub const TEXT: u8 = 4;
}

impl Answer {
    /// Whether this answer fits `q` (its kind, and choices it offers).
    pub fn fits(&self, q: &Question) -> bool {
        match (self, q.kind) {
            (Answer::Declined, _) => true,
            (Answer::YesNo(_), QuestionKind::YesNo) => true,
            (Answer::Choice(c), QuestionKind::Single) => q.choice(*c).is_some(),
            (Answer::Choices(cs), QuestionKind::Multiple) => {
                cs.iter().all(|c| q.choice(*c).is_some())
            }
            (Answer::Text(_), QuestionKind::ShortText) => true,
            _ => false,
        }
    }
}

/// The seeker's answers to the intake questions, in increasing question-id
/// order, each question at most once; skipped questions are absent.
/// `Debug` prints how many answers there are, never what they say.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct IntakeAnswers(Vec<(QuestionId, Answer)>);

impl fmt::Debug for IntakeAnswers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IntakeAnswers(n={})", self.0.len())
    }
}

impl IntakeAnswers {
    /// No answer (every question skipped).
    pub fn none() -> Self {
        IntakeAnswers(Vec::new())
    }

    /// Answers in any order; sorted by question id. Errors on a question
    /// answered twice, more than [`MAX_ANSWERS`] answers, or an answer that
    /// is malformed on its own (no choice, a repeated choice, an empty or
    /// too long text).
    pub fn new(mut answers: Vec<(QuestionId, Answer)>) -> Result<Self, Error> {
        if answers.len() > MAX_ANSWERS {
            return Err(Error::TooLongToEncode {
                what: "intake answers",
                max: MAX_ANSWERS,
                got: answers.len(),
            });
        }
        answers.sort_by_key(|(id, _)| *id);
        if answers.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(DecodeError::Invalid {
                what: "a question answered twice",
            }
            .into());
        }
        for (_, a) in &mut answers {
            match a {
                Answer::Choices(cs) => {
                    cs.sort_unstable();
                    cs.dedup();
                    if cs.is_empty() {
                        return Err(DecodeError::Invalid {
                            what: "a multiple-choice answer with no choice",
                        }
                        .into());
                    }
                }
                Answer::Text(t) if t.is_empty() || t.len() > MAX_SHORT_ANSWER_LEN => {
                    return Err(DecodeError::Invalid {
                        what: "short answer empty or too long",
                    }
                    .into());
                }
                _ => {}
            }
        }
        Ok(IntakeAnswers(answers))
    }

    /// The answers, by question id.
    pub fn iter(&self) -> impl Iterator<Item = &(QuestionId, Answer)> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The answer to question `id`.
    pub fn get(&self, id: QuestionId) -> Option<&Answer> {
        self.0.iter().find(|(q, _)| *q == id).map(|(_, a)| a)
    }

    /// Refuses answers the seeker's client must not send for a team whose
    /// questions are `asked` (from the directory): one to a question the
    /// team does not ask, or one that does not fit its question.
    pub fn check_against(&self, asked: &[&Question]) -> Result<(), Error> {
        for (id, a) in &self.0 {
            let q = asked
                .iter()
                .find(|q| q.id == *id)
                .ok_or(DecodeError::Invalid {
                    what: "an answer to a question the team does not ask",
                })?;
            if !a.fits(q) {
                return Err(DecodeError::Invalid {
                    what: "an answer that does not fit its question",
                }
                .into());
            }
        }
        Ok(())
    }

    /// Encodes the answers.
    ///
    /// ```text
    /// answers = count:u16 (≤ 8) || answer*      (strictly increasing question ids)
    /// answer  = question:u16 || tag:u8 || value
    ///   0 declined   (nothing)
    ///   1 yes/no     value:u8 (0 no, 1 yes)
    ///   2 choice     id:u8
    ///   3 choices    count:u16 (1–10) || id:u8*   (strictly increasing)
    ///   4 text       str16 (1–200 bytes)
    /// ```
    pub(crate) fn write(&self, w: &mut Writer) -> Result<(), Error> {
        w.count_u16(self.0.len(), MAX_ANSWERS, "intake answers")?;
        for (id, a) in &self.0 {
            w.u16(id.0);
            match a {
                Answer::Declined => {
                    w.u8(answer_tag::DECLINED);
                }
                Answer::YesNo(b) => {
                    w.u8(answer_tag::YES_NO).u8(u8::from(*b));
                }
                Answer::Choice(c) => {
                    w.u8(answer_tag::CHOICE).u8(*c);
                }
                Answer::Choices(cs) => {
                    w.u8(answer_tag::CHOICES);
                    w.count_u16(cs.len(), MAX_CHOICES, "answer choices")?;
                    for c in cs {
                        w.u8(*c);
                    }
                }
                Answer::Text(t) => {
                    w.u8(answer_tag::TEXT);
                    w.vec_u16(t.as_str().as_bytes(), MAX_SHORT_ANSWER_LEN, "short answer")?;
                }
            }
        }
        Ok(())
    }

    /// Strictly decodes the answers (see [`IntakeAnswers::write`]): question
    /// ids and choices strictly increasing, a yes/no byte of 0 or 1, no
    /// empty choice list or text.
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = r.count_u16(MAX_ANSWERS, "intake answers")?;
        let mut out: Vec<(QuestionId, Answer)> = Vec::with_capacity(n);
        for _ in 0..n {
            let id = QuestionId(r.u16("question id")?);
            if out.last().is_some_and(|(prev, _)| *prev >= id) {
                return Err(DecodeError::Invalid {
                    what: "intake answers not in increasing question order",
                });
            }
            let a = match r.u8("answer tag")? {
                answer_tag::DECLINED => Answer::Declined,
                answer_tag::YES_NO => match r.u8("yes/no")? {
                    0 => Answer::YesNo(false),
                    1 => Answer::YesNo(true),
                    tag => {
                        return Err(DecodeError::UnknownTag {
                            what: "yes/no",
                            tag,
                        });
                    }
                },
                answer_tag::CHOICE => Answer::Choice(r.u8("choice")?),
                answer_tag::CHOICES => {
                    let k = r.count_u16(MAX_CHOICES, "answer choices")?;
                    if k == 0 {
                        return Err(DecodeError::Invalid {
                            what: "a multiple-choice answer with no choice",
                        });
                    }
                    let cs = r.take(k, "answer choices")?.to_vec();
                    if cs.windows(2).any(|w| w[0] >= w[1]) {
                        return Err(DecodeError::Invalid {
                            what: "answer choices not strictly increasing",
                        });
                    }
                    Answer::Choices(cs)
                }
                answer_tag::TEXT => {
                    let t = r.str_u16(MAX_SHORT_ANSWER_LEN, "short answer")?;
                    if t.is_empty() {
                        return Err(DecodeError::Invalid {
                            what: "empty short answer",
                        });
                    }
                    Answer::Text(MessageText::new(t))
                }
                tag => {
                    return Err(DecodeError::UnknownTag {
                        what: "answer",
                        tag,
                    });
                }
            };
            out.push((id, a));
        }
        Ok(IntakeAnswers(out))
    }
}

/// How one answer reads for a counselor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShownAnswer {
    /// "Prefer not to say".
    Declined,
    /// Yes or no.
    YesNo(bool),
    /// The labels of the chosen choices, in the question's order.
    Choices(Vec<String>),
    /// A short text (shown as written: it is the seeker's own words).
    Text(String),
    /// The answer names a question the directory no longer has, or does
    /// not fit it: shown as such, never trusted for sorting or filtering.
    Unrecognised,
}

/// One line of a conversation's intake summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SummaryLine {
    pub question: QuestionId,
    pub meaning: Meaning,
    /// The question as the seeker saw it (the helper's wording when they
    /// wrote for someone else); empty for an unknown question.
    pub prompt: String,
    pub answer: ShownAnswer,
}

/// What the answers say, read against the directory, for the top of a
/// conversation and for the inbox's sort and filters. Every flag is `None`
/// when the question was skipped, declined, not asked or unrecognised.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IntakeSummary {
    /// Someone writes on another person's behalf (the answers describe that person).
    pub for_someone_else: Option<bool>,
    /// 18 or under and in the U.S. without a parent, guardian or custodian.
    pub minor: Option<bool>,
    /// The urgency level chosen (higher is more urgent).
    pub urgency: Option<u8>,
    /// The chosen urgency is the highest the question offers.
    pub urgent: Option<bool>,
    /// Asylum already asked in one of the listed countries.
    pub asylum_elsewhere: Option<bool>,
    /// A U.S. citizen.
    pub us_citizen: Option<bool>,
    /// Already in Canada.
    pub in_canada: Option<bool>,
    /// Every answer, in the team's question order, then any answer to a
    /// question the team does not list.
    pub lines: Vec<SummaryLine>,
}

/// Reads `answers` against the directory's `catalog` and the team's
/// question order `order`, with labels in `lang`.
pub fn summarize(
    answers: &IntakeAnswers,
    catalog: &[Question],
    order: &[QuestionId],
    lang: Language,
) -> IntakeSummary {
    let mut s = IntakeSummary::default();
    let find = |id: QuestionId| catalog.iter().find(|q| q.id == id);
    // Who it is for first: it picks the wording of every other line.
    for (id, a) in answers.iter() {
        if let (Some(q), Answer::Choice(c)) = (find(*id), a)
            && q.meaning == Meaning::ForWhom
            && a.fits(q)
        {
            s.for_someone_else = Some(*c == FOR_WHOM_SOMEONE_ELSE);
        }
    }
    let other = s.for_someone_else == Some(true);
    let mut ids: Vec<QuestionId> = order
        .iter()
        .copied()
        .filter(|id| answers.get(*id).is_some())
        .collect();
    ids.extend(
        answers
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| !order.contains(id)),
    );
    for id in ids {
        let Some(a) = answers.get(id) else {
            continue;
        };
        let Some(q) = find(id).filter(|q| a.fits(q)) else {
            s.lines.push(SummaryLine {
                question: id,
                meaning: find(id).map_or(Meaning::Other, |q| q.meaning),
                prompt: find(id)
                    .map(|q| q.prompt(lang, other).to_owned())
                    .unwrap_or_default(),
                answer: ShownAnswer::Unrecognised,
            });
            continue;
        };
        let label = |c: u8| q.choice(c).map(|c| c.label.get(lang).to_owned());
        let shown = match a {
            Answer::Declined => ShownAnswer::Declined,
            Answer::YesNo(b) => ShownAnswer::YesNo(*b),
            Answer::Choice(c) => ShownAnswer::Choices(label(*c).into_iter().collect()),
            Answer::Choices(cs) => ShownAnswer::Choices(
                q.choices
                    .iter()
                    .filter(|c| cs.contains(&c.id))
                    .map(|c| c.label.get(lang).to_owned())
                    .collect(),
            ),
            Answer::Text(t) => ShownAnswer::Text(t.as_str().to_owned()),
        };
        match (q.meaning, a) {
            (Meaning::Minor, Answer::YesNo(b)) => s.minor = Some(*b),
            (Meaning::Urgency, Answer::Choice(c)) => {
                s.urgency = Some(*c);
                s.urgent = Some(Some(*c) == q.top_level());
            }
            (Meaning::AsylumElsewhere, Answer::Choices(cs)) => {
                s.asylum_elsewhere = Some(cs.iter().any(|c| *c != ASYLUM_NONE));
            }
            (Meaning::Citizenship, Answer::Choices(cs)) => {
                s.us_citizen = Some(cs.contains(&CITIZENSHIP_US));
            }
            (Meaning::Location, Answer::Choice(c)) => s.in_canada = Some(*c == LOCATION_IN_CANADA),
            _ => {}
        }
        s.lines.push(SummaryLine {
            question: id,
            meaning: q.meaning,
            prompt: q.prompt(lang, other).to_owned(),
            answer: shown,
        });
    }
    s
}

/// The default questions (ids 1–6) covering what the network's counselors
/// need to know first; every default team asks all six, in this order.
/// Translations are a first draft to be reviewed by native speakers.
pub fn default_questions() -> Vec<Question> {
    let l = Localized::new;
    let c = |id: u8, en: &str, es: &str, fr: &str, ht: &str| Choice {
        id,
        label: l(en, es, fr, ht),
    };
    vec![
        Question {
            id: QuestionId(1),
            kind: QuestionKind::Single,
            meaning: Meaning::ForWhom,
            prompt: l(
                "Who are you writing for?",
                "¿Para quién escribe?",
                "Pour qui écrivez-vous ?",
                "Pou ki moun w ap ekri?",
            ),
            prompt_other: l(
                "Who are you writing for?",
                "¿Para quién escribe?",
                "Pour qui écrivez-vous ?",
                "Pou ki moun w ap ekri?",
            ),
            choices: vec![
                c(
                    FOR_WHOM_SELF,
                    "For myself",
                    "Para mí",
                    "Pour moi-même",
                    "Pou tèt mwen",
                ),
                c(
                    FOR_WHOM_SOMEONE_ELSE,
                    "For someone else (a client, a friend, family)",
                    "Para otra persona (cliente, amistad, familia)",
                    "Pour une autre personne (client, ami, famille)",
                    "Pou yon lòt moun (kliyan, zanmi, fanmi)",
                ),
            ],
        },
        Question {
            id: QuestionId(2),
            kind: QuestionKind::YesNo,
            meaning: Meaning::Minor,
            prompt: l(
                "Are you 18 or under and in the U.S. without a parent, guardian or custodian?",
                "¿Tiene 18 años o menos y está en EE. UU. sin su madre, padre, tutor o custodio?",
                "Avez-vous 18 ans ou moins et êtes-vous aux États-Unis sans parent, tuteur ou gardien ?",
                "Èske ou gen 18 an oswa mwens epi ou Ozetazini san paran, gadyen oswa responsab?",
            ),
            prompt_other: l(
                "Is the person you are helping 18 or under and in the U.S. without a parent, guardian or custodian?",
                "¿La persona a quien ayuda tiene 18 años o menos y está en EE. UU. sin su madre, padre, tutor o custodio?",
                "La personne que vous aidez a-t-elle 18 ans ou moins et est-elle aux États-Unis sans parent, tuteur ou gardien ?",
                "Èske moun w ap ede a gen 18 an oswa mwens epi li Ozetazini san paran, gadyen oswa responsab?",
            ),
            choices: vec![],
        },
        Question {
            id: QuestionId(3),
            kind: QuestionKind::Multiple,
            meaning: Meaning::AsylumElsewhere,
            prompt: l(
                "Have you already asked for asylum in one of these countries?",
                "¿Ya pidió asilo en alguno de estos países?",
                "Avez-vous déjà demandé l'asile dans l'un de ces pays ?",
                "Èske ou te deja mande azil nan youn nan peyi sa yo?",
            ),
            prompt_other: l(
                "Has the person you are helping already asked for asylum in one of these countries?",
                "¿La persona a quien ayuda ya pidió asilo en alguno de estos países?",
                "La personne que vous aidez a-t-elle déjà demandé l'asile dans l'un de ces pays ?",
                "Èske moun w ap ede a te deja mande azil nan youn nan peyi sa yo?",
            ),
            choices: vec![
                c(1, "The U.S.", "EE. UU.", "Les États-Unis", "Ozetazini"),
                c(2, "The U.K.", "Reino Unido", "Le Royaume-Uni", "Wayòm Ini"),
                c(3, "Australia", "Australia", "L'Australie", "Ostrali"),
                c(
                    4,
                    "New Zealand",
                    "Nueva Zelanda",
                    "La Nouvelle-Zélande",
                    "Nouvèl Zeland",
                ),
                c(
                    ASYLUM_NONE,
                    "No, none of these",
                    "No, en ninguno",
                    "Non, dans aucun",
                    "Non, nan okenn",
                ),
            ],
        },
        Question {
            id: QuestionId(4),
            kind: QuestionKind::Multiple,
            meaning: Meaning::Citizenship,
            prompt: l(
                "What is your citizenship? Choose all that apply.",
                "¿Cuál es su ciudadanía? Elija todas las que correspondan.",
                "Quelle est votre citoyenneté ? Choisissez toutes celles qui s'appliquent.",
                "Ki sitwayènte ou? Chwazi tout sa ki kòrèk.",
            ),
            prompt_other: l(
                "What is the citizenship of the person you are helping? Choose all that apply.",
                "¿Cuál es la ciudadanía de la persona a quien ayuda? Elija todas las que correspondan.",
                "Quelle est la citoyenneté de la personne que vous aidez ? Choisissez toutes celles qui s'appliquent.",
                "Ki sitwayènte moun w ap ede a? Chwazi tout sa ki kòrèk.",
            ),
            choices: vec![
                c(CITIZENSHIP_US, "U.S.", "EE. UU.", "États-Unis", "Ozetazini"),
                c(2, "Haiti", "Haití", "Haïti", "Ayiti"),
                c(3, "Mexico", "México", "Mexique", "Meksik"),
                c(4, "Venezuela", "Venezuela", "Venezuela", "Venezyela"),
                c(5, "Colombia", "Colombia", "Colombie", "Kolonbi"),
                c(6, "Honduras", "Honduras", "Honduras", "Ondiras"),
                c(7, "Guatemala", "Guatemala", "Guatemala", "Gwatemala"),
                c(8, "Cuba", "Cuba", "Cuba", "Kiba"),
                c(
                    9,
                    "Another country",
                    "Otro país",
                    "Un autre pays",
                    "Yon lòt peyi",
                ),
            ],
        },
        Question {
            id: QuestionId(5),
            kind: QuestionKind::Single,
            meaning: Meaning::Location,
            prompt: l(
                "Where are you now?",
                "¿Dónde está ahora?",
                "Où êtes-vous maintenant ?",
                "Ki kote ou ye kounye a?",
            ),
            prompt_other: l(
                "Where is the person you are helping now?",
                "¿Dónde está ahora la persona a quien ayuda?",
                "Où se trouve maintenant la personne que vous aidez ?",
                "Ki kote moun w ap ede a ye kounye a?",
            ),
            choices: vec![
                c(
                    1,
                    "In the U.S., near the Canadian border",
                    "En EE. UU., cerca de la frontera con Canadá",
                    "Aux États-Unis, près de la frontière canadienne",
                    "Ozetazini, toupre fwontyè Kanada a",
                ),
                c(
                    2,
                    "At the border",
                    "En la frontera",
                    "À la frontière",
                    "Sou fwontyè a",
                ),
                c(
                    LOCATION_IN_CANADA,
                    "Already in Canada",
                    "Ya en Canadá",
                    "Déjà au Canada",
                    "Deja nan Kanada",
                ),
                c(
                    4,
                    "Somewhere else",
                    "En otro lugar",
                    "Ailleurs",
                    "Yon lòt kote",
                ),
            ],
        },
        Question {
            id: QuestionId(6),
            kind: QuestionKind::Single,
            meaning: Meaning::Urgency,
            prompt: l(
                "How urgent is it?",
                "¿Qué tan urgente es?",
                "À quel point est-ce urgent ?",
                "Konbyen sa ijan?",
            ),
            prompt_other: l(
                "How urgent is it for the person you are helping?",
                "¿Qué tan urgente es para la persona a quien ayuda?",
                "À quel point est-ce urgent pour la personne que vous aidez ?",
                "Konbyen sa ijan pou moun w ap ede a?",
            ),
            choices: vec![
                c(
                    1,
                    "It can wait a few weeks",
                    "Puede esperar unas semanas",
                    "Cela peut attendre quelques semaines",
                    "Sa ka tann kèk semèn",
                ),
                c(
                    2,
                    "In the next few days",
                    "En los próximos días",
                    "Dans les prochains jours",
                    "Nan kèk jou k ap vini yo",
                ),
                c(
                    3,
                    "Today: there is danger now",
                    "Hoy: hay peligro ahora",
                    "Aujourd'hui : il y a un danger maintenant",
                    "Jodi a: gen danje kounye a",
                ),
            ],
        },
    ]
}

/// The question ids every default team asks, in order.
pub fn default_team_questions() -> Vec<QuestionId> {
    (1..=6).map(QuestionId).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(a: &IntakeAnswers) -> Vec<u8> {
        let mut w = Writer::new();
        a.write(&mut w).unwrap();
        w.into_bytes()
    }

    fn decode(b: &[u8]) -> Result<IntakeAnswers, DecodeError> {
        let mut r = Reader::new(b);
        let a = IntakeAnswers::read(&mut r)?;
        r.finish("answers")?;
        Ok(a)
    }

    pub(crate) fn sample_answers() -> IntakeAnswers {
        IntakeAnswers::new(vec![
            (QuestionId(6), Answer::Choice(3)),
            (QuestionId(1), Answer::Choice(FOR_WHOM_SOMEONE_ELSE)),
            (QuestionId(2), Answer::YesNo(true)),
            (QuestionId(4), Answer::Choices(vec![3, 2])),
            (QuestionId(5), Answer::Declined),
        ])
        .unwrap()
    }

    #[test]
    fn defaults_are_valid_and_fit() {
        let q = default_questions();
        let team = default_team_questions();
        validate_catalog(&q, [team.as_slice()]).unwrap();
        let mut catalog_len = 2;
        for x in &q {
            let mut w = Writer::new();
            x.write(&mut w).unwrap();
            assert!(w.len() <= MAX_QUESTION_LEN);
            let b = w.into_bytes();
            let mut r = Reader::new(&b);
            assert_eq!(&Question::read(&mut r).unwrap(), x);
            r.finish("question").unwrap();
            catalog_len += b.len();
        }
        // What the defaults add to the directory a seeker fetches on every
        // visit (docs/PROTOCOL.md §5.2): a few kilobytes.
        assert_eq!(catalog_len, 4253);
    }

    #[test]
    fn names_round_trip() {
        for t in 0..=6 {
            let m = Meaning::from_wire(t).unwrap();
            assert_eq!(Meaning::from_name(m.name()), Some(m));
        }
        assert!(Meaning::from_wire(7).is_err());
        assert_eq!(Meaning::from_name("age"), None);
        for t in 1..=4 {
            let k = QuestionKind::from_wire(t).unwrap();
            assert_eq!(QuestionKind::from_name(k.name()), Some(k));
        }
        assert!(QuestionKind::from_wire(0).is_err() && QuestionKind::from_wire(5).is_err());
        assert_eq!(QuestionKind::from_name("essay"), None);
    }

    #[test]
    fn answers_round_trip_canonically() {
        let a = sample_answers();
        let ids: Vec<u16> = a.iter().map(|(q, _)| q.0).collect();
        assert_eq!(ids, vec![1, 2, 4, 5, 6]);
        assert_eq!(a.get(QuestionId(4)), Some(&Answer::Choices(vec![2, 3])));
        let b = encode(&a);
        assert_eq!(decode(&b).unwrap(), a);
        assert_eq!(decode(&encode(&IntakeAnswers::none())).unwrap().len(), 0);
        // Debug never shows a value.
        assert_eq!(format!("{a:?}"), "IntakeAnswers(n=5)");
        assert_eq!(
            format!("{:?}", Answer::Text(MessageText::new("Haiti"))),
            "Text(len=5)"
        );
    }

    #[test]
    fn strict_decoding_refuses_every_malformation() {
        let cases: &[(&str, &str)] = &[
            ("out of order", "0002 0002 02 01   0001 02 01"),
            ("duplicate", "0002 0001 02 01   0001 02 02"),
            ("yes/no byte 2", "0001 0002 01 02"),
            ("unknown answer tag", "0001 0002 05"),
            ("empty choices", "0001 0004 03 0000"),
            ("choices not increasing", "0001 0004 03 0002 03 02"),
            ("repeated choice", "0001 0004 03 0002 02 02"),
            (
                "too many choices",
                "0001 0004 03 000b 0102030405060708090a0b",
            ),
            ("empty text", "0001 0009 04 0000"),
            ("too many answers", "0009"),
            ("truncated", "0001 0002 01"),
        ];
        for (name, hex_str) in cases {
            let b = hex::decode(hex_str.replace(' ', "")).unwrap();
            assert!(decode(&b).is_err(), "{name}");
        }
        let long = format!("0001 0009 04 00c9 {}", "61".repeat(201)).replace(' ', "");
        assert!(decode(&hex::decode(long).unwrap()).is_err());
        let mut b = encode(&sample_answers());
        b.push(0);
        assert!(matches!(decode(&b), Err(DecodeError::TrailingBytes { .. })));
        // Constructing refuses what encoding would not carry.
        assert!(
            IntakeAnswers::new(vec![
                (QuestionId(1), Answer::Declined),
                (QuestionId(1), Answer::Declined)
            ])
            .is_err()
        );
        assert!(IntakeAnswers::new(vec![(QuestionId(1), Answer::Choices(vec![]))]).is_err());
        assert!(IntakeAnswers::new(vec![(QuestionId(1), Answer::Text("".into()))]).is_err());
        assert!(
            IntakeAnswers::new(
                (0..=MAX_ANSWERS as u16)
                    .map(|i| (QuestionId(i), Answer::Declined))
                    .collect()
            )
            .is_err()
        );
    }

    #[test]
    fn catalog_rules() {
        let base = default_questions();
        let team = default_team_questions();
        let check = |f: &dyn Fn(&mut Vec<Question>, &mut Vec<QuestionId>)| {
            let mut q = base.clone();
            let mut t = team.clone();
            f(&mut q, &mut t);
            validate_catalog(&q, [t.as_slice()])
        };
        assert!(check(&|_, _| {}).is_ok());
        assert!(check(&|q, _| q[1].id = QuestionId(1)).is_err());
        assert!(check(&|q, _| q[0].choices[1].id = 3).is_err());
        assert!(check(&|q, _| q[1].kind = QuestionKind::Single).is_err());
        assert!(check(&|q, _| q[1].choices = q[0].choices.clone()).is_err());
        assert!(check(&|q, _| q[2].choices.truncate(1)).is_err());
        assert!(check(&|q, _| q[2].choices[1].id = 1).is_err());
        assert!(check(&|q, _| q[3].prompt.en.clear()).is_err());
        assert!(check(&|q, _| q[3].prompt_other.ht = "x".repeat(MAX_PROMPT_LEN + 1)).is_err());
        assert!(check(&|q, _| q[3].choices[0].label.es = "x".repeat(65)).is_err());
        assert!(check(&|q, _| q[5].kind = QuestionKind::Multiple).is_err());
        assert!(
            check(&|_, t| t.swap(0, 1)).is_err(),
            "for-whom must be first"
        );
        assert!(check(&|_, t| t.push(QuestionId(2))).is_err());
        assert!(check(&|_, t| t.push(QuestionId(99))).is_err());
        assert!(
            check(&|q, t| {
                let mut dup = q[1].clone();
                dup.id = QuestionId(7);
                q.push(dup);
                t.push(QuestionId(7));
            })
            .is_err(),
            "two minor questions in one team"
        );
        assert!(
            check(&|q, _| {
                let mut extra = q[1].clone();
                extra.meaning = Meaning::Other;
                extra.kind = QuestionKind::ShortText;
                for i in 0..(MAX_QUESTIONS as u16 + 1 - 6) {
                    extra.id = QuestionId(100 + i);
                    q.push(extra.clone());
                }
            })
            .is_err()
        );
        assert!(check(&|_, t| t.extend([7, 8, 9].map(QuestionId))).is_err());
    }

    #[test]
    fn summary_reads_answers_against_the_directory() {
        let q = default_questions();
        let order = default_team_questions();
        let s = summarize(&sample_answers(), &q, &order, Language::En);
        assert_eq!(s.for_someone_else, Some(true));
        assert_eq!(s.minor, Some(true));
        assert_eq!(s.urgency, Some(3));
        assert_eq!(s.urgent, Some(true));
        assert_eq!(s.us_citizen, Some(false));
        assert_eq!(s.asylum_elsewhere, None, "skipped");
        assert_eq!(s.in_canada, None, "declined");
        let order_seen: Vec<u16> = s.lines.iter().map(|l| l.question.0).collect();
        assert_eq!(order_seen, vec![1, 2, 4, 5, 6]);
        // The helper's wording, since they write for someone else.
        assert!(
            s.lines[1]
                .prompt
                .starts_with("Is the person you are helping")
        );
        assert_eq!(
            s.lines[2].answer,
            ShownAnswer::Choices(vec!["Haiti".into(), "Mexico".into()])
        );
        assert_eq!(s.lines[3].answer, ShownAnswer::Declined);
        let es = summarize(&sample_answers(), &q, &order, Language::Es);
        assert_eq!(
            es.lines[2].answer,
            ShownAnswer::Choices(vec!["Haití".into(), "México".into()])
        );

        // Answers that do not fit, or name an unknown question, are shown
        // as unrecognised and never trusted.
        let odd = IntakeAnswers::new(vec![
            (QuestionId(2), Answer::Choice(1)),
            (QuestionId(6), Answer::Choice(9)),
            (QuestionId(40), Answer::YesNo(true)),
        ])
        .unwrap();
        let s = summarize(&odd, &q, &order, Language::En);
        assert_eq!(s.minor, None);
        assert_eq!(s.urgency, None);
        assert_eq!(s.lines.len(), 3);
        assert!(
            s.lines
                .iter()
                .all(|l| l.answer == ShownAnswer::Unrecognised)
        );
        assert_eq!(s.lines[2].question, QuestionId(40));
        assert_eq!(s.lines[2].prompt, "");
        // Self-path wording otherwise.
        let mine = IntakeAnswers::new(vec![(QuestionId(2), Answer::YesNo(false))]).unwrap();
        let s = summarize(&mine, &q, &order, Language::En);
        assert_eq!(s.for_someone_else, None);
        assert_eq!(s.minor, Some(false));
        assert!(s.lines[0].prompt.starts_with("Are you 18"));
    }

    #[test]
    fn check_against_refuses_what_the_team_does_not_ask() {
        let q = default_questions();
        let asked: Vec<&Question> = q.iter().take(3).collect();
        sample_answers()
            .check_against(&q.iter().collect::<Vec<_>>())
            .unwrap();
        assert!(sample_answers().check_against(&asked).is_err());
        let wrong = IntakeAnswers::new(vec![(QuestionId(1), Answer::Choice(3))]).unwrap();
        assert!(wrong.check_against(&asked).is_err());
        let wrong = IntakeAnswers::new(vec![(QuestionId(2), Answer::Choices(vec![1]))]).unwrap();
        assert!(wrong.check_against(&asked).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
            let mut r = Reader::new(&bytes);
            let _ = Question::read(&mut r);
        }
    }
}
