//! "Did you mean …?" for misspelt kinds and field names, by edit distance; pure.

/// The edit distance between `a` and `b` with adjacent transpositions counted as one edit
/// (optimal string alignment), so `maxWieght` is one edit away from `maxWeight`.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows of the dynamic-programming table: i-2, i-1 and i.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The candidate closest to `word`, ignoring case, when it is near enough to be a likely typo:
/// at most one edit for words up to 5 characters, two up to 9, three beyond. Ties go to the first
/// candidate.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_lowercase();
    let limit = match word.chars().count() {
        0 => return None,
        1..=5 => 1,
        6..=9 => 2,
        _ => 3,
    };
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| (edit_distance(&lower, &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// ` (did you mean "x"?)` when a candidate is close to `word`, else an empty string.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(word, candidates)
        .map(|c| format!(" (did you mean {c:?}?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_count_insertions_deletions_substitutions_and_swaps() {
        let cases = [
            ("", "", 0),
            ("abc", "", 3),
            ("Canery", "Canary", 1),
            ("maxWieght", "maxWeight", 1),
            ("stepWeigth", "stepWeight", 1),
            ("kitten", "sitting", 3),
            ("interval", "intervall", 1),
        ];
        for (a, b, d) in cases {
            assert_eq!(edit_distance(a, b), d, "{a} → {b}");
            assert_eq!(edit_distance(b, a), d, "{b} → {a}");
        }
    }

    #[test]
    fn close_words_get_a_suggestion_and_far_ones_none() {
        let kinds = ["Canary", "MetricTemplate", "AlertProvider"];
        assert_eq!(closest("Canery", kinds), Some("Canary"));
        assert_eq!(closest("canary", kinds), Some("Canary"));
        assert_eq!(closest("MetricTemplates", kinds), Some("MetricTemplate"));
        assert_eq!(closest("Deployment", kinds), None);
        assert_eq!(closest("Canary", kinds), None, "an exact match is no typo");
        let fields = ["maxWeight", "stepWeight", "stepWeights", "interval"];
        assert_eq!(closest("maxWieght", fields), Some("maxWeight"));
        assert_eq!(closest("stepWeigth", fields), Some("stepWeight"));
        assert_eq!(closest("port", ["path", "host"]), None);
        assert_eq!(
            did_you_mean("Canery", kinds),
            " (did you mean \"Canary\"?)".to_string()
        );
        assert_eq!(did_you_mean("Pod", kinds), String::new());
    }
}
