//! FITS header cards (FITS 4.0 §4): parsing 80-character card images into keyword/value pairs.

use std::fmt::Write as _;

/// Length of one card image (FITS 4.0 §3.3.1).
pub const CARD_LEN: usize = 80;
/// Length of one header or data block (FITS 4.0 §3.1).
pub const BLOCK_LEN: usize = 2880;

/// A keyword's value (FITS 4.0 §4.2).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    Logical(bool),
    Integer(i64),
    Real(f64),
    Complex(f64, f64),
    /// A string with `''` unescaped, trailing blanks removed and `CONTINUE` cards joined.
    String(String),
}

/// One keyword record: possibly several card images (a long string continued with `CONTINUE`).
#[derive(Debug, Clone, PartialEq)]
pub struct Card {
    /// Upper-case keyword; for `HIERARCH` cards the words after `HIERARCH`, joined by one space.
    pub keyword: String,
    /// `None` for commentary cards (`COMMENT`, `HISTORY`, blank) and undefined values.
    pub value: Option<Value>,
    /// Text after the `/`, or the text of a commentary card.
    pub comment: String,
    /// The original card images, concatenated (a multiple of 80 bytes), written back unchanged.
    pub image: String,
}

/// A parsed header: the cards in file order, without `END`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Header {
    cards: Vec<Card>,
}

/// Why a header could not be parsed; the caller adds the file name.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderError(pub String);

impl Header {
    /// Parses card images from `bytes` (a whole number of cards), stopping at `END`.
    /// Returns the header and the number of bytes of cards read, `END` card included.
    pub fn parse_cards(bytes: &[u8]) -> Result<(Header, usize), HeaderError> {
        let mut cards: Vec<Card> = Vec::new();
        for (index, image) in bytes.chunks(CARD_LEN).enumerate() {
            if image.len() != CARD_LEN {
                break;
            }
            if let Some(pos) = image.iter().position(|b| !(0x20..=0x7e).contains(b)) {
                return Err(HeaderError(format!(
                    "card {} has a non-ASCII or control byte 0x{:02x} at column {}",
                    index + 1,
                    image[pos],
                    pos + 1
                )));
            }
            // Checked above: every byte is printable ASCII.
            let text = std::str::from_utf8(image).map_err(|e| HeaderError(e.to_string()))?;
            if text.starts_with("END") && text[3..].trim().is_empty() {
                return Ok((Header { cards }, (index + 1) * CARD_LEN));
            }
            let card = parse_card(text)
                .map_err(|reason| HeaderError(format!("card {}: {reason}", index + 1)))?;
            if card.keyword == "CONTINUE" {
                if let Some(prev) = cards.last_mut().filter(|c| continues(c)) {
                    join_continue(prev, &card, text);
                    continue;
                }
            }
            cards.push(card);
        }
        Err(HeaderError("no END card".into()))
    }

    /// Parses a header written as newline-separated cards (astropy's `Header.tostring(sep='\n')`).
    pub fn from_card_lines(text: &str) -> Result<Header, HeaderError> {
        let mut bytes = Vec::with_capacity(text.len() + CARD_LEN);
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if line.len() > CARD_LEN {
                return Err(HeaderError(format!(
                    "line longer than 80 columns: {line:?}"
                )));
            }
            bytes.extend_from_slice(line.as_bytes());
            bytes.resize(bytes.len() + CARD_LEN - line.len(), b' ');
        }
        if !text.lines().any(|l| l.trim_end() == "END") {
            bytes.extend_from_slice(format!("{:80}", "END").as_bytes());
        }
        Header::parse_cards(&bytes).map(|(h, _)| h)
    }

    pub fn cards(&self) -> &[Card] {
        &self.cards
    }

    /// The value of the first card with this keyword (case-insensitive).
    pub fn value(&self, keyword: &str) -> Option<&Value> {
        self.card(keyword).and_then(|c| c.value.as_ref())
    }

    pub fn card(&self, keyword: &str) -> Option<&Card> {
        self.cards
            .iter()
            .find(|c| c.keyword.eq_ignore_ascii_case(keyword))
    }

    pub fn contains(&self, keyword: &str) -> bool {
        self.card(keyword).is_some()
    }

    /// A real or integer value as `f64`.
    pub fn real(&self, keyword: &str) -> Option<f64> {
        match self.value(keyword)? {
            Value::Real(v) => Some(*v),
            Value::Integer(v) => Some(*v as f64),
            _ => None,
        }
    }

    pub fn integer(&self, keyword: &str) -> Option<i64> {
        match self.value(keyword)? {
            Value::Integer(v) => Some(*v),
            _ => None,
        }
    }

    pub fn string(&self, keyword: &str) -> Option<&str> {
        match self.value(keyword)? {
            Value::String(s) => Some(s.as_str()),
            _ => None,
        }
    }

    pub fn logical(&self, keyword: &str) -> Option<bool> {
        match self.value(keyword)? {
            Value::Logical(v) => Some(*v),
            _ => None,
        }
    }

    /// Sets `keyword` to `value`: replaces the first card with that keyword in place, or
    /// inserts a new card after the card named `after` (or at the end).
    pub fn set(&mut self, keyword: &str, value: Value, after: Option<&str>) {
        let comment = self
            .card(keyword)
            .map(|c| c.comment.clone())
            .unwrap_or_default();
        let card = Card::new(keyword, value, &comment);
        if let Some(slot) = self
            .cards
            .iter_mut()
            .find(|c| c.keyword.eq_ignore_ascii_case(keyword))
        {
            *slot = card;
            return;
        }
        let at = after
            .and_then(|a| {
                self.cards
                    .iter()
                    .position(|c| c.keyword.eq_ignore_ascii_case(a))
            })
            .map_or(self.cards.len(), |p| p + 1);
        self.cards.insert(at, card);
    }

    /// Removes every card with this keyword.
    pub fn remove(&mut self, keyword: &str) {
        self.cards
            .retain(|c| !c.keyword.eq_ignore_ascii_case(keyword));
    }

    pub fn push(&mut self, card: Card) {
        self.cards.push(card);
    }

    pub fn insert(&mut self, index: usize, card: Card) {
        let index = index.min(self.cards.len());
        self.cards.insert(index, card);
    }

    /// The header as FITS bytes: every card image, `END`, and blank padding to a whole block.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity((self.cards.len() + 1) * CARD_LEN + BLOCK_LEN);
        for card in &self.cards {
            out.extend_from_slice(card.image.as_bytes());
        }
        out.extend_from_slice(format!("{:80}", "END").as_bytes());
        out.resize(out.len().div_ceil(BLOCK_LEN) * BLOCK_LEN, b' ');
        out
    }
}

impl Card {
    /// A new value card in the fixed format of FITS 4.0 §4.2 (value right-aligned to column 30).
    pub fn new(keyword: &str, value: Value, comment: &str) -> Card {
        let keyword = keyword.to_ascii_uppercase();
        let formatted = format_value(&value);
        let mut image = if keyword.len() > 8 {
            format!("HIERARCH {keyword} = {formatted}")
        } else if matches!(value, Value::String(_)) {
            format!("{keyword:<8}= {formatted:<20}")
        } else {
            format!("{keyword:<8}= {formatted:>20}")
        };
        if !comment.is_empty() && image.len() + 3 < CARD_LEN {
            let _ = write!(image, " / {comment}");
        }
        image.truncate(CARD_LEN);
        let image = format!("{image:<80}");
        Card {
            keyword,
            value: Some(value),
            comment: comment.to_string(),
            image,
        }
    }

    /// A commentary card (`COMMENT`, `HISTORY`), truncated to one card image.
    pub fn commentary(keyword: &str, text: &str) -> Card {
        let mut image = format!("{:<8}{text}", keyword.to_ascii_uppercase());
        image.truncate(CARD_LEN);
        Card {
            keyword: keyword.to_ascii_uppercase(),
            value: None,
            comment: text.to_string(),
            image: format!("{image:<80}"),
        }
    }
}

fn continues(card: &Card) -> bool {
    matches!(&card.value, Some(Value::String(s)) if s.ends_with('&'))
}

/// Appends a `CONTINUE` card's string to a long-string card (FITS 4.0 §4.2.1.2).
fn join_continue(prev: &mut Card, cont: &Card, text: &str) {
    if let (Some(Value::String(s)), Some(Value::String(more))) = (&mut prev.value, &cont.value) {
        s.pop();
        s.push_str(more);
    }
    if !cont.comment.is_empty() {
        if !prev.comment.is_empty() {
            prev.comment.push(' ');
        }
        prev.comment.push_str(&cont.comment);
    }
    prev.image.push_str(text);
}

fn parse_card(text: &str) -> Result<Card, String> {
    let image = text.to_string();
    let name = text[..8].trim_end();
    if name == "HIERARCH" {
        // ESO HIERARCH convention: `HIERARCH A B C = value / comment`.
        let rest = &text[8..];
        let Some(eq) = rest.find('=') else {
            return Ok(commentary(name, &text[8..], image));
        };
        let keyword = rest[..eq].split_whitespace().collect::<Vec<_>>().join(" ");
        let (value, comment) = parse_value_field(&rest[eq + 1..])?;
        return Ok(Card {
            keyword: keyword.to_ascii_uppercase(),
            value,
            comment,
            image,
        });
    }
    if let Some(pos) = name
        .bytes()
        .position(|b| !(b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_'))
    {
        return Err(format!(
            "keyword {name:?} has an invalid character at column {}",
            pos + 1
        ));
    }
    if name == "CONTINUE" {
        let (value, comment) = parse_value_field(&text[8..])?;
        return Ok(Card {
            keyword: name.to_string(),
            value,
            comment,
            image,
        });
    }
    if &text[8..10] != "= " || matches!(name, "COMMENT" | "HISTORY" | "") {
        return Ok(commentary(name, &text[8..], image));
    }
    let (value, comment) = parse_value_field(&text[10..])?;
    Ok(Card {
        keyword: name.to_string(),
        value,
        comment,
        image,
    })
}

fn commentary(keyword: &str, text: &str, image: String) -> Card {
    Card {
        keyword: keyword.to_string(),
        value: None,
        comment: text.trim_end().to_string(),
        image,
    }
}

/// Parses the value/comment field of a card (columns 11–80, or after `=` for HIERARCH).
fn parse_value_field(field: &str) -> Result<(Option<Value>, String), String> {
    let trimmed = field.trim_start();
    if let Some(body) = trimmed.strip_prefix('\'') {
        let (s, rest) = parse_quoted(body)?;
        let comment = rest
            .trim_start()
            .strip_prefix('/')
            .map(|c| c.trim().to_string())
            .unwrap_or_default();
        return Ok((Some(Value::String(s)), comment));
    }
    let (raw, comment) = match trimmed.find('/') {
        Some(p) => (trimmed[..p].trim(), trimmed[p + 1..].trim().to_string()),
        None => (trimmed.trim(), String::new()),
    };
    if raw.is_empty() {
        return Ok((None, comment));
    }
    parse_scalar(raw)
        .map(|v| (Some(v), comment))
        .ok_or_else(|| format!("cannot parse value {raw:?}"))
}

/// A quoted string body (after the opening quote): `''` is a literal quote (FITS 4.0 §4.2.1.1).
fn parse_quoted(body: &str) -> Result<(String, &str), String> {
    let mut out = String::new();
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\'' {
            if matches!(chars.peek(), Some((_, '\''))) {
                chars.next();
                out.push('\'');
            } else {
                out.truncate(out.trim_end().len());
                return Ok((out, &body[i + 1..]));
            }
        } else {
            out.push(c);
        }
    }
    Err("string value has no closing quote".into())
}

fn parse_scalar(raw: &str) -> Option<Value> {
    match raw {
        "T" => return Some(Value::Logical(true)),
        "F" => return Some(Value::Logical(false)),
        _ => {}
    }
    if let Some(inner) = raw.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
        let (re, im) = inner.split_once(',')?;
        return Some(Value::Complex(
            parse_real(re.trim())?,
            parse_real(im.trim())?,
        ));
    }
    let digits = raw.strip_prefix(['+', '-']).unwrap_or(raw);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return match raw.parse::<i64>() {
            Ok(v) => Some(Value::Integer(v)),
            Err(_) => parse_real(raw).map(Value::Real),
        };
    }
    parse_real(raw).map(Value::Real)
}

/// A FITS real: Fortran-style `D` exponents are accepted (FITS 4.0 §4.2.4).
fn parse_real(raw: &str) -> Option<f64> {
    let ok = raw
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'E' | b'e' | b'D' | b'd'));
    if !ok {
        return None;
    }
    raw.replace(['D', 'd'], "E").parse::<f64>().ok()
}

/// Formats a value for a card: reals round-trip exactly (shortest representation).
pub fn format_value(value: &Value) -> String {
    match value {
        Value::Logical(true) => "T".into(),
        Value::Logical(false) => "F".into(),
        Value::Integer(v) => v.to_string(),
        Value::Real(v) => format_real(*v),
        Value::Complex(re, im) => format!("({}, {})", format_real(*re), format_real(*im)),
        Value::String(s) => format!("'{:<8}'", s.replace('\'', "''")),
    }
}

fn format_real(v: f64) -> String {
    let s = format!("{v:?}").replace('e', "E");
    match s.find('E') {
        Some(p) if !s[..p].contains('.') => format!("{}.0{}", &s[..p], &s[p..]),
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cards(lines: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for l in lines {
            out.extend_from_slice(format!("{l:<80}").as_bytes());
        }
        out
    }

    #[test]
    fn parses_basic_values_and_comments() {
        let bytes = cards(&[
            "SIMPLE  =                    T / conforms",
            "BITPIX  =                  -32",
            "NAXIS   =                    2",
            "CRVAL1  =   2.6738000000000E+02 / RA",
            "CDELT1  =              -1.0D-3",
            "OBJECT  = 'O''Brien  '         / with quote",
            "EMPTY   =                      / undefined",
            "CPLX    = (1.5, -2)",
            "COMMENT this is = not a value",
            "HISTORY made by a test",
            "HIERARCH ESO DET CHIP NAME = 'CCD-44' / hierarch",
            "END",
        ]);
        let (h, used) = Header::parse_cards(&bytes).unwrap();
        assert_eq!(used, 12 * 80);
        assert_eq!(h.logical("SIMPLE"), Some(true));
        assert_eq!(h.integer("BITPIX"), Some(-32));
        assert_eq!(h.real("CRVAL1"), Some(267.38));
        assert_eq!(h.real("CDELT1"), Some(-1.0e-3));
        assert_eq!(h.string("OBJECT"), Some("O'Brien"));
        assert_eq!(h.card("OBJECT").unwrap().comment, "with quote");
        assert!(h.contains("EMPTY") && h.value("EMPTY").is_none());
        assert_eq!(h.value("CPLX"), Some(&Value::Complex(1.5, -2.0)));
        assert_eq!(h.card("COMMENT").unwrap().comment, "this is = not a value");
        assert_eq!(h.string("ESO DET CHIP NAME"), Some("CCD-44"));
        assert_eq!(h.real("naxis"), Some(2.0), "look-ups ignore case");
    }

    #[test]
    fn joins_continue_long_strings() {
        let bytes = cards(&[
            "LONGSTR = 'The quick brown &'",
            "CONTINUE  'fox jumps &'  / part two",
            "CONTINUE  'over'",
            "NEXT    = 1",
            "END",
        ]);
        let (h, _) = Header::parse_cards(&bytes).unwrap();
        assert_eq!(h.string("LONGSTR"), Some("The quick brown fox jumps over"));
        assert_eq!(h.cards().len(), 2);
        assert_eq!(h.card("LONGSTR").unwrap().image.len(), 240);
        assert_eq!(h.integer("NEXT"), Some(1));
    }

    #[test]
    fn rejects_missing_end_and_non_ascii() {
        let bytes = cards(&["SIMPLE  =                    T"]);
        assert!(Header::parse_cards(&bytes).unwrap_err().0.contains("END"));
        let mut bytes = cards(&["SIMPLE  =                    T", "END"]);
        bytes[20] = 0xe9;
        let err = Header::parse_cards(&bytes).unwrap_err().0;
        assert!(err.contains("card 1") && err.contains("column 21"), "{err}");
        let bytes = cards(&["BAD KEY =                    T", "END"]);
        assert!(Header::parse_cards(&bytes).is_err());
        let bytes = cards(&["STR     = 'unterminated", "END"]);
        assert!(Header::parse_cards(&bytes).is_err());
    }

    #[test]
    fn set_replaces_in_place_and_round_trips_reals() {
        let mut h =
            Header::from_card_lines("NAXIS1  = 10\nCRPIX1  = 5.5 / ref pixel\nEND").unwrap();
        h.set("CRPIX1", Value::Real(-123.25), None);
        h.set("CRPIX2", Value::Real(1e-300), Some("CRPIX1"));
        let bytes = h.to_bytes();
        assert_eq!(bytes.len(), BLOCK_LEN);
        let (back, _) = Header::parse_cards(&bytes).unwrap();
        assert_eq!(back.real("CRPIX1"), Some(-123.25));
        assert_eq!(back.card("CRPIX1").unwrap().comment, "ref pixel");
        assert_eq!(back.real("CRPIX2"), Some(1e-300));
        assert_eq!(back.cards()[2].keyword, "CRPIX2");
    }

    proptest::proptest! {
        #[test]
        fn reals_round_trip_through_cards(v in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO) {
            let card = Card::new("X", Value::Real(v), "");
            let (h, _) = Header::parse_cards(format!("{}{:80}", card.image, "END").as_bytes()).unwrap();
            proptest::prop_assert_eq!(h.real("X"), Some(v));
        }

        #[test]
        fn strings_round_trip_through_cards(s in "[ -~]{0,60}") {
            let card = Card::new("S", Value::String(s.clone()), "");
            let (h, _) = Header::parse_cards(format!("{}{:80}", card.image, "END").as_bytes()).unwrap();
            proptest::prop_assert_eq!(h.string("S"), Some(s.trim_end()));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = Header::parse_cards(&bytes);
        }
    }
}
