//! The counselor inbox's intake view: each conversation's answers read
//! against the directory ([`Counselor::intake_summary`]), and one ordering
//! and filtering of the inbox by them ([`Counselor::inbox`]) that the CLI and
//! the web inbox share — minors first, urgent first, only those writing for
//! someone else.
//!
//! Only answers that fit a question of the device's directory count
//! ([`crate::intake::summarize`]); a conversation whose answer is skipped,
//! declined or unrecognised is never ranked as a minor or as urgent, and
//! sorts after those that are, by its newest message.

use core::cmp::{Ordering, Reverse};

use super::counselor::{Conversation, Counselor};
use crate::ids::{Language, MailboxId};
use crate::intake::{IntakeSummary, summarize};

/// How the inbox is ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InboxOrder {
    /// The newest message first (the default).
    #[default]
    Newest,
    /// Those who answered that they are (or the person helped is) 18 or
    /// under and alone in the U.S. first, then the rest; newest first within each.
    MinorsFirst,
    /// The most urgent level first, then those without an urgency answer;
    /// newest first within a level.
    UrgentFirst,
}

impl InboxOrder {
    /// Every order, for pickers.
    pub const ALL: [InboxOrder; 3] = [
        InboxOrder::Newest,
        InboxOrder::MinorsFirst,
        InboxOrder::UrgentFirst,
    ];

    /// "newest", "minors-first" or "urgent-first".
    pub fn name(self) -> &'static str {
        match self {
            InboxOrder::Newest => "newest",
            InboxOrder::MinorsFirst => "minors-first",
            InboxOrder::UrgentFirst => "urgent-first",
        }
    }

    /// Parses [`InboxOrder::name`].
    pub fn from_name(name: &str) -> Option<InboxOrder> {
        InboxOrder::ALL.into_iter().find(|o| o.name() == name)
    }
}

/// Which conversations to keep, by their intake answers (all false: every one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IntakeFilter {
    /// Only those who answered yes to the minor question.
    pub minors: bool,
    /// Only those who chose the highest urgency level.
    pub urgent: bool,
    /// Only those writing for someone else.
    pub for_someone_else: bool,
}

impl IntakeFilter {
    /// Whether a conversation with this summary is kept.
    pub fn keeps(&self, s: &IntakeSummary) -> bool {
        (!self.minors || s.minor == Some(true))
            && (!self.urgent || s.urgent == Some(true))
            && (!self.for_someone_else || s.for_someone_else == Some(true))
    }
}

/// When a conversation last changed (its newest entry; 0 when empty).
pub fn updated_at(v: &Conversation) -> u64 {
    v.history.last().map_or(0, |e| e.at.0)
}

impl Counselor {
    /// The conversation's intake answers read against this device's
    /// directory, with question wordings and labels in `lang`. Without a
    /// directory every answer shows as unrecognised.
    pub fn intake_summary(&self, id: &MailboxId, lang: Language) -> Option<IntakeSummary> {
        let v = self.conversation(id)?;
        let (catalog, order) = match self.directory() {
            Some(d) => (
                d.questions(),
                d.team(v.team)
                    .map(|t| t.questions.clone())
                    .unwrap_or_default(),
            ),
            None => (&[][..], Vec::new()),
        };
        Some(summarize(&v.answers, catalog, &order, lang))
    }

    /// The conversations kept by `filter`, in `order` (ties: newest first,
    /// then by mailbox id, so every device lists them alike).
    pub fn inbox(&self, order: InboxOrder, filter: &IntakeFilter) -> Vec<MailboxId> {
        let mut rows: Vec<(MailboxId, u64, IntakeSummary)> = self
            .conversations()
            .iter()
            .filter_map(|(id, v)| {
                let s = self.intake_summary(id, Language::En)?;
                filter.keeps(&s).then_some((*id, updated_at(v), s))
            })
            .collect();
        let newest = |a: &(MailboxId, u64, IntakeSummary), b: &(MailboxId, u64, IntakeSummary)| {
            Reverse(a.1).cmp(&Reverse(b.1)).then(a.0.cmp(&b.0))
        };
        rows.sort_by(|a, b| {
            let first = match order {
                InboxOrder::Newest => Ordering::Equal,
                InboxOrder::MinorsFirst => {
                    Reverse(a.2.minor == Some(true)).cmp(&Reverse(b.2.minor == Some(true)))
                }
                InboxOrder::UrgentFirst => Reverse(a.2.urgency).cmp(&Reverse(b.2.urgency)),
            };
            first.then_with(|| newest(a, b))
        });
        rows.into_iter().map(|r| r.0).collect()
    }
}
