//! Orders the rules may propose. Their codes live in `cds-hooks/codes/orders.json`.

use super::question::{Question, Side};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderKind {
    VenousDuplex,
    DDimer,
    KneeUltrasound,
    KneeMri,
    LumbarSpineMri,
    PhysiotherapyReferral,
}

impl OrderKind {
    /// The key of this order in the order catalogue data file.
    pub fn key(self) -> &'static str {
        match self {
            OrderKind::VenousDuplex => "venous-duplex",
            OrderKind::DDimer => "d-dimer",
            OrderKind::KneeUltrasound => "knee-ultrasound",
            OrderKind::KneeMri => "knee-mri",
            OrderKind::LumbarSpineMri => "lumbar-spine-mri",
            OrderKind::PhysiotherapyReferral => "physiotherapy-referral",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Routine,
    Urgent,
    Stat,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProposedOrder {
    pub kind: OrderKind,
    /// The leg(s) concerned, when known.
    pub side: Option<Side>,
    pub priority: Priority,
    /// Whether this is the recommended action among the card's suggestions.
    pub recommended: bool,
    /// The findings behind it (for `reasonCode`).
    pub reasons: Vec<Question>,
}

impl ProposedOrder {
    pub fn new(kind: OrderKind, side: Option<Side>, priority: Priority) -> ProposedOrder {
        ProposedOrder { kind, side, priority, recommended: false, reasons: Vec::new() }
    }

    pub fn recommended(mut self) -> ProposedOrder {
        self.recommended = true;
        self
    }

    pub fn because(mut self, reasons: &[Question]) -> ProposedOrder {
        self.reasons = reasons.to_vec();
        self
    }
}
