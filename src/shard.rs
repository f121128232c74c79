//! Deterministic shards of a sorted work list, for array jobs (Slurm, Kubernetes Indexed Jobs):
//! `ser predict` and `ser features` cut their inputs with it.

use anyhow::{Context, Result, bail};

/// Shard `index` of `count` (0-based): a contiguous run of the sorted input, so that the
/// shards' outputs concatenated in shard order are the unsharded run's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// "I/N" with 0 <= I < N.
    pub fn parse(text: &str) -> Result<Shard> {
        let (i, n) = text.split_once('/').with_context(|| format!("--shard {text:?}: expected I/N, e.g. 0/4"))?;
        let (index, count): (usize, usize) = (
            i.trim().parse().with_context(|| format!("--shard {text:?}: {i:?} is not a shard index"))?,
            n.trim().parse().with_context(|| format!("--shard {text:?}: {n:?} is not a shard count"))?,
        );
        Shard::new(index, count).with_context(|| format!("--shard {text:?}"))
    }

    pub fn new(index: usize, count: usize) -> Result<Shard> {
        if count == 0 || index >= count {
            bail!("shard {index} of {count}: the index must be below the count (0-based)");
        }
        Ok(Shard { index, count })
    }

    /// The shard an array job's environment names, and where it came from: Slurm
    /// (`SLURM_ARRAY_TASK_ID` with `SLURM_ARRAY_TASK_COUNT`, or with `..._MIN`/`..._MAX`) or a
    /// Kubernetes Indexed Job (`JOB_COMPLETION_INDEX`, with the count from `count` — the
    /// `--shard-count` flag — or `SER_SHARD_COUNT`, since a pod does not see its job's
    /// completions). None outside array jobs.
    pub fn from_env(count: Option<usize>, env: impl Fn(&str) -> Option<String>) -> Result<Option<(Shard, String)>> {
        let num = |key: &str| -> Result<Option<usize>> {
            env(key).map(|v| v.trim().parse::<usize>().with_context(|| format!("{key}={v:?} is not a number"))).transpose()
        };
        if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
            let (index, n) = match (num("SLURM_ARRAY_TASK_COUNT")?, num("SLURM_ARRAY_TASK_MIN")?, num("SLURM_ARRAY_TASK_MAX")?) {
                (_, Some(min), Some(max)) if max >= min && id >= min => (id - min, max - min + 1),
                (Some(n), _, _) => (id, n),
                _ => bail!("SLURM_ARRAY_TASK_ID={id} without SLURM_ARRAY_TASK_COUNT or MIN/MAX: give --shard I/N"),
            };
            let shard = Shard::new(index, count.unwrap_or(n)).context("Slurm array task")?;
            return Ok(Some((shard, format!("Slurm array task {id}"))));
        }
        if let Some(index) = num("JOB_COMPLETION_INDEX")? {
            let n = count.or(num("SER_SHARD_COUNT")?).context("JOB_COMPLETION_INDEX is set but not the shard count: give --shard-count N (the job's completions) or SER_SHARD_COUNT")?;
            return Ok(Some((Shard::new(index, n).context("Kubernetes Indexed Job")?, format!("Kubernetes job completion index {index}"))));
        }
        Ok(None)
    }

    /// This shard's part of `sorted`: items [index * len / count, (index + 1) * len / count).
    pub fn select<T: Clone>(&self, sorted: &[T]) -> Vec<T> {
        let len = sorted.len();
        sorted[self.index * len / self.count..(self.index + 1) * len / self.count].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_input_without_overlap() {
        for len in [0usize, 1, 7, 10, 101] {
            let items: Vec<usize> = (0..len).collect();
            for count in 1..=8 {
                let joined: Vec<usize> = (0..count).flat_map(|i| Shard::new(i, count).unwrap().select(&items)).collect();
                assert_eq!(joined, items, "len {len}, {count} shards");
            }
        }
        assert!(Shard::parse("4/4").is_err() && Shard::parse("1/0").is_err() && Shard::parse("x").is_err());
        assert_eq!(Shard::parse(" 2/5 ").unwrap(), Shard { index: 2, count: 5 });
    }

    #[test]
    fn array_job_environments_name_the_shard() {
        let env = |pairs: &'static [(&'static str, &'static str)]| move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
        let slurm = Shard::from_env(None, env(&[("SLURM_ARRAY_TASK_ID", "3"), ("SLURM_ARRAY_TASK_COUNT", "8")])).unwrap().unwrap();
        assert_eq!(slurm.0, Shard { index: 3, count: 8 });
        // --array=1-4: ids 1..4, shards 0..3.
        let ranged = Shard::from_env(None, env(&[("SLURM_ARRAY_TASK_ID", "4"), ("SLURM_ARRAY_TASK_MIN", "1"), ("SLURM_ARRAY_TASK_MAX", "4")])).unwrap().unwrap();
        assert_eq!(ranged.0, Shard { index: 3, count: 4 });
        let k8s = Shard::from_env(Some(6), env(&[("JOB_COMPLETION_INDEX", "5")])).unwrap().unwrap();
        assert_eq!(k8s.0, Shard { index: 5, count: 6 });
        assert!(Shard::from_env(None, env(&[("JOB_COMPLETION_INDEX", "5")])).is_err(), "no count: an error, not a guess");
        assert!(Shard::from_env(None, env(&[])).unwrap().is_none());
        assert!(Shard::from_env(None, env(&[("SLURM_ARRAY_TASK_ID", "9"), ("SLURM_ARRAY_TASK_COUNT", "8")])).is_err());
        // A task id below the array's first, or an array whose last id is below its first, is
        // refused, never wrapped around into some other shard.
        assert!(Shard::from_env(None, env(&[("SLURM_ARRAY_TASK_ID", "0"), ("SLURM_ARRAY_TASK_MIN", "1"), ("SLURM_ARRAY_TASK_MAX", "4")])).is_err());
        assert!(Shard::from_env(None, env(&[("SLURM_ARRAY_TASK_ID", "3"), ("SLURM_ARRAY_TASK_MIN", "3"), ("SLURM_ARRAY_TASK_MAX", "1")])).is_err());
    }
}
