//! SQL's LIKE, matched in linear space under a step budget, so that no
//! pattern can make a request run for long.

/// One element of a LIKE pattern.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum P {
    Any,
    One,
    Lit(char),
}

/// SQL's LIKE pattern: `%` any run, `_` one character, `\%` `\_` `\\`
/// themselves.
pub(super) fn compile(pattern: &str) -> Vec<P> {
    let mut pat = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        pat.push(match c {
            '%' => P::Any,
            '_' => P::One,
            '\\' => P::Lit(chars.next().unwrap_or('\\')),
            c => P::Lit(c),
        });
    }
    pat
}

/// Whether `text` matches `pat`: the classic two-pointer match with one
/// backtrack point, linear in space. Each step spends one unit of
/// `budget`; when it runs out the answer is false and the budget stays at
/// zero, which the caller reports, so that no pattern can make a request
/// run for long.
pub(super) fn like_in(pat: &[P], text: &str, budget: &std::cell::Cell<u64>) -> bool {
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut back: Option<(usize, usize)> = None;
    while t < text.len() {
        let left = budget.get();
        if left == 0 {
            return false;
        }
        budget.set(left - 1);
        match pat.get(p) {
            Some(P::Any) => {
                back = Some((p, t));
                p += 1;
            }
            Some(P::One) => {
                p += 1;
                t += 1;
            }
            Some(P::Lit(c)) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match back {
                Some((bp, bt)) => {
                    back = Some((bp, bt + 1));
                    p = bp + 1;
                    t = bt + 1;
                }
                None => return false,
            },
        }
    }
    pat[p..].iter().all(|x| *x == P::Any)
}

#[cfg(test)]
pub(super) fn like(pattern: &str, text: &str) -> bool {
    like_in(&compile(pattern), text, &std::cell::Cell::new(u64::MAX))
}
