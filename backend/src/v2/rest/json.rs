//! Tensor `data` of a JSON request, parsed straight from the request text into the typed
//! buffer the engine takes: one scan of the text, one pre-sized vector, no intermediate values.
//! Tensor data is nearly all of such a request, so this stays out of serde's per-element
//! dispatch: numbers are converted as their digits are read (Clinger's exact fast path), and
//! only the rare ones it does not cover are handed to `fast_float2`.

use half::{bf16, f16};

/// Why `data` could not become a tensor.
#[derive(Debug, PartialEq)]
pub(super) enum DataError {
    /// More elements than the shape allows: parsing stopped there.
    TooMany,
    Invalid(String),
}

/// A tensor element type, made from one JSON scalar.
pub(super) trait Element: Sized {
    const NAME: &'static str;
    fn from_number(n: &Number<'_>) -> Option<Self>;
    fn from_bool(_: bool) -> Option<Self> {
        None
    }
}

macro_rules! int_element {
    ($($t:ty => $name:literal),*) => {$(
        impl Element for $t {
            const NAME: &'static str = $name;
            fn from_number(n: &Number<'_>) -> Option<Self> {
                n.to_i64().and_then(|v| <$t>::try_from(v).ok())
            }
        }
    )*};
}
int_element!(u8 => "UINT8", i8 => "INT8", i16 => "INT16", i32 => "INT32", i64 => "INT64");

impl Element for f64 {
    const NAME: &'static str = "FP64";
    fn from_number(n: &Number<'_>) -> Option<Self> {
        n.to_f64()
    }
}

impl Element for f32 {
    const NAME: &'static str = "FP32";
    fn from_number(n: &Number<'_>) -> Option<Self> {
        n.to_f32()
    }
}

impl Element for f16 {
    const NAME: &'static str = "FP16";
    fn from_number(n: &Number<'_>) -> Option<Self> {
        n.to_f64().map(f16::from_f64)
    }
}

impl Element for bf16 {
    const NAME: &'static str = "BF16";
    fn from_number(n: &Number<'_>) -> Option<Self> {
        n.to_f64().map(bf16::from_f64)
    }
}

impl Element for bool {
    const NAME: &'static str = "BOOL";
    fn from_number(_: &Number<'_>) -> Option<Self> {
        None
    }
    fn from_bool(v: bool) -> Option<Self> {
        Some(v)
    }
}

/// A JSON number as scanned: its text, and its value as `digits × 10^exponent` when the
/// digits fit a u64.
pub(super) struct Number<'t> {
    text: &'t str,
    negative: bool,
    /// Every digit, integer and fraction, as one integer; `None` past 19 digits.
    digits: Option<u64>,
    exponent: i64,
    /// Neither fraction nor exponent: the only form integer tensors take (as before, `1.0`
    /// and `1e3` are refused for them).
    integer: bool,
}

/// Powers of ten that f64 holds exactly.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// Powers of ten that f32 holds exactly.
const POW10_F32: [f32; 11] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10];

impl Number<'_> {
    fn to_i64(&self) -> Option<i64> {
        // At most 19 digits and no leading zeros: anything longer is past i64's range anyway.
        let v = i128::from(self.digits.filter(|_| self.integer)?);
        i64::try_from(if self.negative { -v } else { v }).ok()
    }

    /// Clinger's fast path: when the digits and the power of ten are both exact in f64, one
    /// IEEE multiplication or division gives the correctly rounded value. It covers nearly
    /// every number a client sends (up to 15 significant digits, modest exponents).
    fn exact_f64(&self) -> Option<f64> {
        let w = self.digits.filter(|w| *w <= 1 << 53)? as f64;
        let p = POW10.get(usize::try_from(self.exponent.unsigned_abs()).ok()?)?;
        let v = if self.exponent < 0 { w / p } else { w * p };
        Some(if self.negative { -v } else { v })
    }

    /// Correctly rounded; `None` past f64's range (serde_json refused those as "number out of
    /// range", and so does this).
    #[inline]
    fn to_f64(&self) -> Option<f64> {
        self.exact_f64().or_else(|| fast_float2::parse(self.text).ok()).filter(|v| v.is_finite())
    }

    /// Correctly rounded to f32 (not through f64 and then f32, which can round twice), so the
    /// shortest text of an f32, which every encoder writes, always comes back as that f32.
    #[inline]
    fn to_f32(&self) -> Option<f32> {
        // The same fast path in f32, for up to 7 significant digits.
        if let Some(w) = self.digits.filter(|w| *w <= 1 << 24)
            && let Some(p) = POW10_F32.get(usize::try_from(self.exponent.unsigned_abs()).unwrap_or(usize::MAX))
        {
            let v = if self.exponent < 0 { w as f32 / p } else { w as f32 * p };
            return Some(if self.negative { -v } else { v });
        }
        if let Some(y) = self.exact_f64() {
            // `y` is the correctly rounded f64; rounding it once more to f32 is exact unless it
            // lies exactly halfway between two f32s, where only the text can tell the way.
            // (Halfway points are themselves f64s, so `y` is on the text's side of every other.)
            // In f32's normal range, halfway is the 29 bits f32 lacks reading 1000…0; below
            // it, f32 lacks more bits, and the text is always asked.
            let halfway = y.abs() < f64::from(f32::MIN_POSITIVE) || y.to_bits() & 0x1fff_ffff == 0x1000_0000;
            if !halfway {
                return Some(y as f32);
            }
        }
        let v: f32 = fast_float2::parse(self.text).ok()?;
        // Past f32's range but within f64's the value is infinity, as `f64 as f32` made it.
        if v.is_infinite() { self.to_f64().map(|_| v) } else { Some(v) }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = b.get(i) {
        i += 1;
    }
    i
}

#[inline(always)]
fn digit(b: &[u8], i: usize) -> Option<u8> {
    b.get(i).map(|c| c.wrapping_sub(b'0')).filter(|d| *d < 10)
}

/// The value of the eight ASCII digits at `i`, when there are eight: SWAR as in fast_float
/// (Lemire, "Number Parsing at a Gigabyte per Second"), which halves the work on long
/// fractions like `0.123456789`.
#[inline(always)]
fn eight_digits(b: &[u8], i: usize) -> Option<u64> {
    let chunk: [u8; 8] = b.get(i..i.checked_add(8)?)?.try_into().ok()?;
    let v = u64::from_le_bytes(chunk);
    // A byte is a digit when subtracting '0' does not borrow and adding 0x46 does not reach 0x80.
    let below = v.wrapping_sub(0x3030_3030_3030_3030);
    let above = v.wrapping_add(0x4646_4646_4646_4646);
    if (below | above) & 0x8080_8080_8080_8080 != 0 {
        return None;
    }
    // Pairs, then quadruples, then all eight, little-endian (first digit lowest).
    let pairs = below.wrapping_mul(10).wrapping_add(below >> 8);
    let low = (pairs & 0x0000_00ff_0000_00ff).wrapping_mul(0x000f_4240_0000_0064);
    let high = ((pairs >> 16) & 0x0000_00ff_0000_00ff).wrapping_mul(0x0000_2710_0000_0001);
    Some(u64::from((low.wrapping_add(high) >> 32) as u32))
}

/// Appends the digits at `i` to `w`; the index past them and how many there were. `w` wraps
/// past 19 digits; the count says so.
#[inline(always)]
fn digits(b: &[u8], mut i: usize, mut w: u64) -> (usize, usize, u64) {
    let from = i;
    while let Some(v) = eight_digits(b, i) {
        w = w.wrapping_mul(100_000_000).wrapping_add(v);
        i += 8;
    }
    while let Some(d) = digit(b, i) {
        w = w.wrapping_mul(10).wrapping_add(u64::from(d));
        i += 1;
    }
    (i, i - from, w)
}

/// The JSON number starting at `start` and the index past it; `None` when the text there is
/// not one (RFC 8259 §6: no `+`, no leading zeros, no bare `.`, no NaN or infinity). Its digits
/// are gathered as they are checked, so the text is read once.
#[inline(always)]
fn scan_number(text: &str, start: usize) -> Option<(Number<'_>, usize)> {
    let b = text.as_bytes();
    let negative = b.get(start) == Some(&b'-');
    let first = start + usize::from(negative);
    let (mut i, int_digits, mut w) = digits(b, first, 0);
    if int_digits == 0 || (int_digits > 1 && b.get(first) == Some(&b'0')) {
        return None;
    }
    let mut frac_digits = 0;
    if b.get(i) == Some(&b'.') {
        (i, frac_digits, w) = digits(b, i + 1, w);
        if frac_digits == 0 {
            return None;
        }
    }
    let mut exponent = 0i64;
    let mut has_exponent = false;
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        let negative_exponent = b.get(i) == Some(&b'-');
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        let from = i;
        while let Some(d) = digit(b, i) {
            // Saturates: such an exponent takes the slow path, which reads the text.
            exponent = exponent.saturating_mul(10).saturating_add(i64::from(d));
            i += 1;
        }
        if i == from {
            return None;
        }
        if negative_exponent {
            exponent = -exponent;
        }
        has_exponent = true;
    }
    let number = Number {
        text: text.get(start..i)?,
        negative,
        // Up to 19 digits `w` is exact (10^19 < 2^64); past that it has wrapped, and the
        // slow path reads the text instead.
        digits: (int_digits + frac_digits <= 19).then_some(w),
        exponent: exponent.saturating_sub(frac_digits as i64),
        integer: frac_digits == 0 && !has_exponent,
    };
    Some((number, i))
}

/// " at line L column C" of byte `i`, as serde_json places its errors.
fn position(text: &str, i: usize) -> String {
    let before = text.as_bytes().get(..i).unwrap_or(text.as_bytes());
    let line = before.iter().filter(|&&c| c == b'\n').count() + 1;
    let column = i - before.iter().rposition(|&c| c == b'\n').map_or(0, |p| p + 1) + 1;
    format!(" at line {line} column {column}")
}

/// Every scalar of a (possibly nested) JSON array, row-major, into one vector of at most
/// `limit` elements: parsing stops at the first element beyond it, whatever follows. The vector
/// is sized from the text too (an element takes at least two bytes, `0,`), so a large declared
/// shape with little data reserves little.
pub(super) fn parse_flat<T: Element>(text: &str, limit: usize) -> Result<Vec<T>, DataError> {
    let b = text.as_bytes();
    let invalid = |what: &str, i: usize| DataError::Invalid(format!("{what}{}", position(text, i)));
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'[') {
        return Err(DataError::Invalid("'data' must be an array".into()));
    }
    let mut values = Vec::with_capacity(limit.min(text.len() / 2 + 1));
    // Arrays are counted, not recursed into, so no nesting depth can exhaust the stack.
    let mut depth = 0usize;
    'value: loop {
        // A value is expected at `i`.
        let start = i;
        let value = match b.get(i) {
            Some(b'[') => {
                depth += 1;
                i = skip_ws(b, i + 1);
                if b.get(i) != Some(&b']') {
                    continue 'value;
                }
                // An empty array: no value, straight to what follows it (below).
                None
            }
            Some(b't') if b[i..].starts_with(b"true") => {
                i += 4;
                Some(
                    T::from_bool(true)
                        .ok_or_else(|| invalid(&format!("true is not a valid {} value", T::NAME), start))?,
                )
            }
            Some(b'f') if b[i..].starts_with(b"false") => {
                i += 5;
                Some(
                    T::from_bool(false)
                        .ok_or_else(|| invalid(&format!("false is not a valid {} value", T::NAME), start))?,
                )
            }
            Some(b'-' | b'0'..=b'9') => {
                let (number, end) = scan_number(text, i).ok_or_else(|| invalid("invalid number", start))?;
                i = end;
                Some(
                    T::from_number(&number)
                        .ok_or_else(|| invalid(&format!("{} is not a valid {} value", number.text, T::NAME), start))?,
                )
            }
            Some(b'"') => return Err(invalid(&format!("found a string, expected {} values", T::NAME), i)),
            Some(b'n') => return Err(invalid(&format!("found null, expected {} values", T::NAME), i)),
            Some(b'{') => return Err(invalid(&format!("found an object, expected {} values", T::NAME), i)),
            Some(_) => return Err(invalid("expected value", i)),
            None => return Err(invalid("EOF while parsing a list", i)),
        };
        if let Some(v) = value {
            if values.len() == limit {
                return Err(DataError::TooMany);
            }
            values.push(v);
        } else {
            // The `]` of the empty array.
            i += 1;
            depth -= 1;
        }
        // After a value or a closed array: `,` and the next value, or `]` closing arrays.
        loop {
            if depth == 0 {
                break 'value;
            }
            i = skip_ws(b, i);
            match b.get(i) {
                Some(b',') => {
                    i = skip_ws(b, i + 1);
                    continue 'value;
                }
                Some(b']') => {
                    i += 1;
                    depth -= 1;
                }
                Some(_) => return Err(invalid("expected `,` or `]`", i)),
                None => return Err(invalid("EOF while parsing a list", i)),
            }
        }
    }
    let end = skip_ws(b, i);
    if end < b.len() {
        return Err(invalid("trailing characters", end));
    }
    Ok(values)
}
