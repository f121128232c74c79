//! Classification metrics as scikit-learn reports them: precision, recall, F1 and support per
//! class, accuracy (weighted accuracy, WA), macro and weighted averages, and the confusion
//! matrix; with the field's headline beside them, the unweighted average recall (UAR).

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct ClassRow {
    pub class: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub classes: Vec<ClassRow>,
    pub accuracy: f64,
    /// Unweighted average recall: the mean of the recalls of the classes present in the truth
    /// (EmoBox's headline; classes a model knows but the data lacks do not count).
    pub uar: f64,
    /// Macro F1 over the classes present in the truth (`macro_avg.f1` averages every class).
    pub macro_f1: f64,
    pub macro_avg: ClassRow,
    pub weighted_avg: ClassRow,
    /// confusion[true][predicted]
    pub confusion: Vec<Vec<usize>>,
}

impl Report {
    pub fn new(names: &[String], truth: &[u32], predicted: &[u32]) -> Report {
        let k = names.len();
        let mut confusion = vec![vec![0usize; k]; k];
        for (&t, &p) in truth.iter().zip(predicted) {
            confusion[t as usize][p as usize] += 1;
        }
        let div = |a: f64, b: f64| if b == 0.0 { 0.0 } else { a / b };
        let classes: Vec<ClassRow> = (0..k)
            .map(|c| {
                let tp = confusion[c][c] as f64;
                let support: usize = confusion[c].iter().sum();
                let predicted: usize = (0..k).map(|r| confusion[r][c]).sum();
                let precision = div(tp, predicted as f64);
                let recall = div(tp, support as f64);
                ClassRow { class: names[c].clone(), precision, recall, f1: div(2.0 * precision * recall, precision + recall), support }
            })
            .collect();
        let n = truth.len();
        let avg = |name: &str, w: &dyn Fn(&ClassRow) -> f64| {
            let total: f64 = classes.iter().map(w).sum();
            ClassRow {
                class: name.to_string(),
                precision: div(classes.iter().map(|r| w(r) * r.precision).sum(), total),
                recall: div(classes.iter().map(|r| w(r) * r.recall).sum(), total),
                f1: div(classes.iter().map(|r| w(r) * r.f1).sum(), total),
                support: n,
            }
        };
        let macro_avg = avg("macro avg", &|_| 1.0);
        let weighted_avg = avg("weighted avg", &|r| r.support as f64);
        let accuracy = div((0..k).map(|c| confusion[c][c]).sum::<usize>() as f64, n as f64);
        let present: Vec<&ClassRow> = classes.iter().filter(|r| r.support > 0).collect();
        let uar = div(present.iter().map(|r| r.recall).sum(), present.len() as f64);
        let macro_f1 = div(present.iter().map(|r| r.f1).sum(), present.len() as f64);
        Report { classes, accuracy, uar, macro_f1, macro_avg, weighted_avg, confusion }
    }

    /// The text scikit-learn's classification_report prints, then the confusion matrix.
    pub fn text(&self) -> String {
        let width = self.classes.iter().map(|r| r.class.len()).max().unwrap_or(0).max(12);
        let mut s = format!("{:>width$} {:>9} {:>9} {:>9} {:>9}\n\n", "", "precision", "recall", "f1-score", "support");
        let row = |r: &ClassRow| format!("{:>width$} {:>9.2} {:>9.2} {:>9.2} {:>9}\n", r.class, r.precision, r.recall, r.f1, r.support);
        for r in &self.classes {
            s += &row(r);
        }
        let n = self.macro_avg.support;
        s += &format!("\n{:>width$} {:>9} {:>9} {:>9.2} {:>9}\n", "accuracy", "", "", self.accuracy, n);
        s += &row(&self.macro_avg);
        s += &row(&self.weighted_avg);
        s += &format!("\n{:>width$} {:>9} {:>9.2}\n", "UAR", "", self.uar);
        s += "\nconfusion matrix (rows: true, columns: predicted)\n";
        // Columns as wide as the longest class name (or count), so no name is cut.
        let cell = self.classes.iter().map(|r| r.class.len()).chain(self.confusion.iter().flatten().map(|v| v.to_string().len())).max().unwrap_or(6).max(6);
        s += &format!("{:>width$} {}\n", "", self.classes.iter().map(|r| format!("{:>cell$}", r.class)).collect::<Vec<_>>().join(" "));
        for (r, line) in self.classes.iter().zip(&self.confusion) {
            s += &format!("{:>width$} {}\n", r.class, line.iter().map(|v| format!("{v:>cell$}")).collect::<Vec<_>>().join(" "));
        }
        s
    }
}

/// Index of the largest value in each row.
pub fn argmax_rows(logits: &[f32], classes: usize) -> Vec<u32> {
    logits.chunks(classes).map(|z| argmax(z) as u32).collect()
}

/// The share of rows of class probabilities whose largest is the label (0 for no rows).
pub fn accuracy_of(probabilities: &[Vec<f32>], labels: &[u32]) -> f64 {
    let right = probabilities.iter().zip(labels).filter(|(p, y)| argmax(p) == **y as usize).count();
    right as f64 / labels.len().max(1) as f64
}

/// Index of the largest value (the first of ties). A NaN never wins over a number (callers
/// refuse non-finite scores before this: `Predictor::probabilities`).
pub fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold(0, |b, (j, x)| if *x > v[b] || (v[b].is_nan() && !x.is_nan()) { j } else { b })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_scikit_learn_on_a_small_case() {
        // sklearn.metrics.classification_report([0,0,1,1,2,2,2], [0,1,1,1,2,0,2]):
        // class 0: p 0.50 r 0.50 f1 0.50; class 1: p 0.67 r 1.00 f1 0.80; class 2: p 1.00 r 0.67
        // f1 0.80; accuracy 0.71; macro f1 0.70; weighted f1 0.71.
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let r = Report::new(&names, &[0, 0, 1, 1, 2, 2, 2], &[0, 1, 1, 1, 2, 0, 2]);
        let close = |a: f64, b: f64| (a - b).abs() < 0.005;
        assert!(close(r.classes[1].precision, 0.667) && close(r.classes[1].f1, 0.8) && close(r.classes[2].recall, 0.667));
        assert!(close(r.accuracy, 5.0 / 7.0) && close(r.macro_avg.f1, 0.7) && close(r.weighted_avg.f1, 0.714));
        assert_eq!(r.confusion[2], vec![1, 0, 2]);
        assert!(r.text().contains("macro avg"));
        // UAR: (0.5 + 1 + 0.667) / 3, and over the classes present only: a fourth class the
        // model knows but no clip has (a corpus without it) leaves UAR and macro F1 as they were,
        // while scikit-learn's macro average counts it as 0.
        assert!(close(r.uar, (0.5 + 1.0 + 2.0 / 3.0) / 3.0) && close(r.macro_f1, 0.7));
        let names4: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let r4 = Report::new(&names4, &[0, 0, 1, 1, 2, 2, 2], &[0, 1, 1, 1, 2, 0, 2]);
        assert!(close(r4.uar, r.uar) && close(r4.macro_f1, 0.7) && close(r4.macro_avg.f1, 0.525));
        // Unbalanced classes: accuracy (WA) and UAR part.
        let r = Report::new(&names, &[0, 0, 0, 0, 1], &[0, 0, 0, 0, 0]);
        assert!(close(r.accuracy, 0.8) && close(r.uar, 0.5), "{} {}", r.accuracy, r.uar);
    }

    #[test]
    fn row_argmaxes_and_accuracy_of_probabilities() {
        // Three rows of three classes: the largest per row, the first of a tie.
        assert_eq!(argmax_rows(&[0.1, 0.8, 0.1, 0.5, 0.5, 0.0, 0.0, 0.2, 0.9], 3), vec![1, 0, 2]);
        let probs = vec![vec![0.1, 0.9], vec![0.7, 0.3], vec![0.4, 0.6], vec![0.2, 0.8]];
        assert_eq!(accuracy_of(&probs, &[1, 0, 0, 1]), 0.75);
        assert_eq!(accuracy_of(&probs, &[0, 1, 0, 0]), 0.0);
        assert_eq!(accuracy_of(&[], &[]), 0.0, "no rows: 0, not NaN");
    }

    #[test]
    fn argmax_takes_the_first_largest_and_never_a_nan() {
        assert_eq!(argmax(&[0.1, 0.7, 0.7, 0.2]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.2, 0.5]), 2);
        assert_eq!(argmax(&[0.3, f32::NAN, 0.1]), 0);
    }
}
