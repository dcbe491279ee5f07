//! Graph recommendation: user and item embeddings from a graph encoder (LightGCN, GCN or
//! GAT), trained with BPR, evaluated by full ranking.
//!
//! - Training: each epoch pairs every training interaction (user, positive item) with one
//!   item the user never interacted with, drawn uniformly (seeded), and minimises
//!   `softplus(s(u, neg) - s(u, pos))` plus `l2 / 2` times the squared norm of the batch's
//!   initial (layer-0) embeddings per triple, as in LightGCN.
//! - Evaluation: every test user is scored against every item, its training items masked
//!   out; Recall@K and NDCG@K, in batches of users so memory stays bounded. The split files
//!   have no validation part, so, as in the LightGCN paper's protocol, the test file also
//!   serves as the validation split that picks the best epoch.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use burn::tensor::activation::softplus;
use burn::tensor::{Device, Int, Tensor};
use rand::RngExt;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::driver;
use super::family::{BatchJob, Config, Family, Prepared, Recommend, Trained};
use super::online::{self, Datatype, Online, Request, Served, Signature, TensorSpec, Values};
use crate::artifacts::findings::{self, Findings, Outcome, PopularityGroup, RankingOutcome};
use crate::artifacts::scores::RecommendationWriter;
use crate::base::config::{ModelKind, check_positive, no_label_smoothing};
use crate::base::memory;
use crate::base::metrics::{self, Metrics};
use crate::base::progress::Progress;
use crate::base::quote::quoted;
use crate::base::rng::HostRng;
use crate::base::split::Split;
use crate::base::tensor::{index_tensor, to_host};
use crate::data::interactions::{InteractionDataConfig, Interactions};
use crate::models::message_passing::NormalizedAdjacency;
use crate::models::recommender::{Encoder, GraphRecommender, RecommenderNetConfig};
use crate::train::Task;

/// `[model]` for a recommender: the encoder plus the BPR loss and ranking settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecommenderConfig {
    /// `lightgcn`, `gcn` or `gat`: what each propagation layer is.
    pub encoder: Encoder,
    pub embedding_size: usize,
    /// Propagation layers K.
    pub layers: usize,
    /// Attention heads per layer with the GAT encoder; must divide `embedding_size`.
    pub heads: usize,
    /// Standard deviation of the normal initialisation (LightGCN-PyTorch uses 0.1).
    pub init_std: f64,
    /// Weight of the L2 penalty on the batch's initial embeddings (LightGCN's `decay`).
    pub l2: f64,
    /// Cut-offs K for Recall@K and NDCG@K.
    pub eval_k: Vec<usize>,
}

impl Default for RecommenderConfig {
    fn default() -> Self {
        Self {
            encoder: Encoder::Lightgcn,
            embedding_size: 64,
            layers: 3,
            heads: 1,
            init_std: 0.1,
            l2: 1e-4,
            eval_k: vec![20],
        }
    }
}

impl RecommenderConfig {
    pub fn net(&self) -> RecommenderNetConfig {
        RecommenderNetConfig {
            encoder: self.encoder,
            embedding_size: self.embedding_size,
            layers: self.layers,
            heads: self.heads,
            init_std: self.init_std,
        }
    }
}

/// Users scored per device matmul when ranking all items.
const USERS_PER_BATCH: usize = 256;

pub struct Recommendation {
    config: RecommenderConfig,
    data: Interactions,
    batch_size: usize,
    train_items: Vec<Vec<u32>>,
    test_items: Vec<Vec<u32>>,
    test_users: Vec<u32>,
    adjacency: NormalizedAdjacency,
}

impl Recommendation {
    pub fn new(
        config: RecommenderConfig,
        data: Interactions,
        batch_size: usize,
        device: &Device,
    ) -> Self {
        let train_items = Interactions::by_user(&data.train, data.num_users);
        let test_items = Interactions::by_user(&data.test, data.num_users);
        let test_users =
            (0..data.num_users as u32).filter(|&u| !test_items[u as usize].is_empty()).collect();
        let adjacency = GraphRecommender::adjacency(
            config.encoder,
            data.num_users,
            data.num_items,
            &data.train,
            &data.train_weights,
            device,
        );
        Self { config, data, batch_size, train_items, test_items, test_users, adjacency }
    }

    /// User and item embeddings after propagation, with the net in inference mode.
    fn ranker(&self, model: &GraphRecommender) -> Ranker {
        let all = model.propagate(&self.adjacency);
        let users = all.clone().narrow(0, 0, self.data.num_users);
        let items = all.narrow(0, self.data.num_users, self.data.num_items);
        Ranker { users, items_t: items.transpose() }
    }

    /// Calls `visit(user, scores)` for each user, scores over all items with the user's
    /// training items set to -inf, computed `USERS_PER_BATCH` users at a time.
    fn rank(
        &self,
        ranker: &Ranker,
        users: &[u32],
        mut visit: impl FnMut(u32, &[f32]) -> Result<()>,
    ) -> Result<()> {
        let device = ranker.users.device();
        let items = self.data.num_items;
        for chunk in users.chunks(USERS_PER_BATCH) {
            let index = index_tensor(chunk.iter().map(|&u| i64::from(u)), &device);
            let mut scores =
                to_host(ranker.users.clone().select(0, index).matmul(ranker.items_t.clone()))?;
            for (row, &user) in scores.chunks_mut(items).zip(chunk) {
                for &seen in &self.train_items[user as usize] {
                    row[seen as usize] = f32::NEG_INFINITY;
                }
                visit(user, row)?;
            }
        }
        Ok(())
    }

    /// Trained users by their id in the interaction files.
    fn trained_user_index(&self) -> HashMap<u64, u32> {
        self.trained_users().map(|u| (self.data.user_id(u), u)).collect()
    }

    /// Users with training interactions: the ones a recommender can rank for.
    fn trained_users(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.data.num_users as u32).filter(|&u| !self.train_items[u as usize].is_empty())
    }
}

/// Propagated embeddings: users `[U, D]`, items transposed `[D, I]`.
struct Ranker {
    users: Tensor<2>,
    items_t: Tensor<2>,
}

impl Task for Recommendation {
    type Model = GraphRecommender;
    type Batch = Vec<[u32; 3]>;

    fn kind(&self) -> ModelKind {
        ModelKind::Recommender
    }

    fn init_model(&self, seed: u64, device: &Device) -> Result<GraphRecommender> {
        Ok(GraphRecommender::new(
            &self.config.net(),
            self.data.num_users,
            self.data.num_items,
            &mut HostRng::new(seed),
            device,
        ))
    }

    fn batches_per_epoch(&self) -> usize {
        self.data.train.len().div_ceil(self.batch_size)
    }

    fn train_batches(&self, rng: &mut HostRng) -> Result<Vec<Self::Batch>> {
        let mut pairs = self.data.train.clone();
        pairs.shuffle(rng.inner());
        let items = self.data.num_items as u32;
        let triples: Vec<[u32; 3]> = pairs
            .into_iter()
            .map(|(user, positive)| {
                // `prepare` made sure every user leaves at least one item unseen.
                let seen = &self.train_items[user as usize];
                loop {
                    let negative = rng.inner().random_range(0..items);
                    if seen.binary_search(&negative).is_err() {
                        return [user, positive, negative];
                    }
                }
            })
            .collect();
        Ok(triples.chunks(self.batch_size).map(|c| c.to_vec()).collect())
    }

    fn train_loss(
        &self,
        model: &GraphRecommender,
        batch: &Self::Batch,
        _rng: &mut HostRng,
    ) -> Result<Tensor<1>> {
        let device = model.embedding.val().device();
        let n = batch.len();
        let offset = self.data.num_users as i64;
        let column = |at: usize, shift: i64| -> Tensor<1, Int> {
            index_tensor(batch.iter().map(|t| i64::from(t[at]) + shift), &device)
        };
        let (users, positives, negatives) = (column(0, 0), column(1, offset), column(2, offset));
        let all = model.propagate(&self.adjacency);
        let user_rows = all.clone().select(0, users.clone());
        let positive_scores =
            (user_rows.clone() * all.clone().select(0, positives.clone())).sum_dim(1);
        let negative_scores = (user_rows * all.select(0, negatives.clone())).sum_dim(1);
        let bpr = softplus(negative_scores - positive_scores, 1.0).mean();
        let initial = model.embedding.val();
        let squared_norm = |index: Tensor<1, Int>| initial.clone().select(0, index).square().sum();
        let squared_norms = squared_norm(users) + squared_norm(positives) + squared_norm(negatives);
        Ok(bpr + squared_norms * (self.config.l2 / (2.0 * n as f64)))
    }

    /// The split files have no validation part: the test interactions stand for it while
    /// training, as in LightGCN (`eval` refuses `--split val`: `EVAL_SPLITS`).
    fn evaluate(&self, model: &GraphRecommender, _split: Split) -> Result<Metrics> {
        let ks = &self.config.eval_k;
        let quality = self.ranking_quality(model, ks, |_| {})?;
        Ok(ranking_metrics(ks, &quality))
    }

    fn findings(&self, model: &GraphRecommender, split: Split) -> Result<Findings> {
        let eval_k = &self.config.eval_k;
        let deepest = eval_k.iter().copied().max().unwrap_or(20).max(findings::RANKING_CURVE_K);
        let ks: Vec<usize> = (1..=deepest).collect();
        let recommended_k = eval_k.iter().copied().max().unwrap_or(20);
        let mut times_recommended = vec![0usize; self.data.num_items];
        let quality = self.ranking_quality(model, &ks, |ranked| {
            for &item in ranked.iter().take(recommended_k) {
                times_recommended[item as usize] += 1;
            }
        })?;
        let at = |k: usize| quality[k - 1];
        let metrics = ranking_metrics(eval_k, &eval_k.iter().map(|&k| at(k)).collect::<Vec<_>>());
        let curve = &quality[..findings::RANKING_CURVE_K];
        let outcome = RankingOutcome {
            users: self.test_users.len(),
            recall: curve.iter().map(|q| q.0).collect(),
            ndcg: curve.iter().map(|q| q.1).collect(),
            recommended_k,
            popularity: self.popularity_groups(&times_recommended),
        };
        Ok(Findings { split, metrics, outcome: Outcome::Ranking(outcome) })
    }
}

/// `recall@K` and `ndcg@K` for each K of `ks`, from their (recall, NDCG) means.
fn ranking_metrics(ks: &[usize], quality: &[(f64, f64)]) -> Metrics {
    let mut out = Metrics::default();
    for (&(recall, ndcg), k) in quality.iter().zip(ks) {
        out.push(format!("recall@{k}"), recall);
        out.push(format!("ndcg@{k}"), ndcg);
    }
    out
}

impl Recommendation {
    /// Mean Recall@K and NDCG@K over the test users for each K of `ks`; `visit` sees each
    /// user's top `max(ks)` items, best first.
    fn ranking_quality(
        &self,
        model: &GraphRecommender,
        ks: &[usize],
        mut visit: impl FnMut(&[u32]),
    ) -> Result<Vec<(f64, f64)>> {
        let max_k = ks.iter().copied().max().unwrap_or(20);
        let mut sums = vec![(0.0, 0.0); ks.len()];
        self.rank(&self.ranker(model), &self.test_users, |user, scores| {
            let ranked = metrics::top_k(scores, max_k);
            for (sum, &k) in sums.iter_mut().zip(ks) {
                let (recall, ndcg) =
                    metrics::recall_ndcg_at_k(&ranked, &self.test_items[user as usize], k);
                sum.0 += recall;
                sum.1 += ndcg;
            }
            visit(&ranked);
            Ok(())
        })?;
        let users = self.test_users.len().max(1) as f64;
        Ok(sums.into_iter().map(|(recall, ndcg)| (recall / users, ndcg / users)).collect())
    }

    /// Items from the most to the least interacted with in training, cut into groups of
    /// equal size: each group's share of the interactions and of the recommendations.
    fn popularity_groups(&self, times_recommended: &[usize]) -> Vec<PopularityGroup> {
        let mut interactions = vec![0usize; self.data.num_items];
        for &(_, item) in &self.data.train {
            interactions[item as usize] += 1;
        }
        let mut order: Vec<usize> = (0..self.data.num_items).collect();
        order.sort_by(|&a, &b| interactions[b].cmp(&interactions[a]).then(a.cmp(&b)));
        let total_interactions = interactions.iter().sum::<usize>().max(1) as f64;
        let total_recommended = times_recommended.iter().sum::<usize>().max(1) as f64;
        let group_size = order.len().div_ceil(findings::POPULARITY_GROUPS).max(1);
        order
            .chunks(group_size)
            .map(|group| PopularityGroup {
                items: group.len(),
                interactions: group.iter().map(|&i| interactions[i]).sum::<usize>() as f64
                    / total_interactions,
                recommended: group.iter().map(|&i| times_recommended[i]).sum::<usize>() as f64
                    / total_recommended,
            })
            .collect()
    }
}

pub struct RecommenderFamily;

/// What `run.json` keeps: the sizes of the embedding table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecommenderInput {
    pub num_users: usize,
    pub num_items: usize,
}

impl RecommenderFamily {
    /// The interactions, refused with an estimate when their id space cannot be trained:
    /// ids index the embedding table densely, so the largest id sets its size.
    fn load(config: &Config<Self>) -> Result<Interactions> {
        let data = Interactions::load(&config.data)?;
        let rows = (data.num_users as u128).saturating_add(data.num_items as u128);
        let table = rows.saturating_mul(config.model.embedding_size as u128);
        let propagation = table.saturating_mul(4 * 2 * (config.model.layers as u128 + 1));
        let per_user_lists = (data.num_users as u128).saturating_mul(2 * 24);
        let bytes = table
            .saturating_mul(memory::TRAINED_F32)
            .saturating_add(propagation)
            .saturating_add(per_user_lists);
        let what = format!(
            "{}: {} users and {} items (data.num_users, data.num_items or the largest ids) at model.embedding_size = {}, model.layers = {}",
            source_name(&config.data),
            data.num_users,
            data.num_items,
            config.model.embedding_size,
            config.model.layers
        );
        memory::ensure_fits(&what, bytes)?;
        if data.skipped_test_users > 0 {
            eprintln!(
                "note: {} test users have no training interactions and are left out of evaluation (they cannot be ranked)",
                data.skipped_test_users
            );
        }
        Ok(data)
    }
}

impl Family for RecommenderFamily {
    const KIND: ModelKind = ModelKind::Recommender;
    const EVAL_SPLITS: &'static [Split] = &[Split::Test];
    type Model = RecommenderConfig;
    type Data = InteractionDataConfig;
    type Input = RecommenderInput;
    type Task = Recommendation;

    fn validate(config: &Config<Self>) -> Result<()> {
        no_label_smoothing(&config.train, "a recommender's BPR ranking")?;
        let model = &config.model;
        check_positive("model.embedding_size", model.embedding_size)?;
        let data = &config.data;
        for (key, value) in [("data.num_users", data.num_users), ("data.num_items", data.num_items)]
        {
            if let Some(count) = value {
                check_positive(key, count)?;
            }
        }
        for (behavior, weight) in &data.behaviors {
            if !(weight.is_finite() && *weight >= 0.0) {
                bail!(
                    "data.behaviors.{}: must be a finite weight of at least 0, got {weight}",
                    behavior.name()
                );
            }
        }
        for (key, value) in [("model.l2", model.l2), ("model.init_std", model.init_std)] {
            if !(value.is_finite() && value >= 0.0) {
                bail!("{key}: must be a finite number of at least 0, got {value}");
            }
        }
        if model.encoder == Encoder::Gat
            && (model.heads == 0 || !model.embedding_size.is_multiple_of(model.heads))
        {
            bail!(
                "model.heads: must divide model.embedding_size ({}), got {}",
                model.embedding_size,
                model.heads
            );
        }
        if model.eval_k.contains(&0) || model.eval_k.is_empty() {
            bail!("model.eval_k: expected a list of cut-offs of at least 1, e.g. [20]");
        }
        Ok(())
    }

    fn metric_names(config: &Config<Self>) -> Vec<String> {
        config
            .model
            .eval_k
            .iter()
            .flat_map(|k| [format!("recall@{k}"), format!("ndcg@{k}")])
            .collect()
    }

    fn prepare(
        config: &Config<Self>,
        device: &Device,
        _resume_from: Option<&Path>,
    ) -> Result<Prepared<Self>> {
        let data = Self::load(config)?;
        let input = RecommenderInput { num_users: data.num_users, num_items: data.num_items };
        let task = Recommendation::new(
            config.model.settings.clone(),
            data,
            config.train.batch_size,
            device,
        );
        if let Some(user) = task
            .trained_users()
            .find(|&u| task.train_items[u as usize].len() >= task.data.num_items)
        {
            let id = task.data.user_id(user);
            bail!(
                "{}: user {id} interacted with every item, so BPR has no negative item to sample for it",
                source_name(&config.data)
            );
        }
        Ok(Prepared { task, labels: Vec::new(), input, run_files: Vec::new() })
    }

    fn net(trained: &Trained<Self>, device: &Device) -> Result<GraphRecommender> {
        let RecommenderInput { num_users, num_items } = trained.input;
        let mut rng = HostRng::new(trained.config.train.seed);
        Ok(GraphRecommender::new(
            &trained.config.model.net(),
            num_users,
            num_items,
            &mut rng,
            device,
        ))
    }

    fn restore(trained: &Trained<Self>, device: &Device) -> Result<Recommendation> {
        let config = &trained.config;
        let data = Self::load(config)?;
        let found = RecommenderInput { num_users: data.num_users, num_items: data.num_items };
        if found != trained.input {
            bail!(
                "{}: the interaction data now has {} users and {} items, the model was trained on {} and {}",
                source_name(&config.data),
                found.num_users,
                found.num_items,
                trained.input.num_users,
                trained.input.num_items
            );
        }
        Ok(Recommendation::new(
            config.model.settings.clone(),
            data,
            config.train.batch_size,
            device,
        ))
    }

    fn score(_trained: &Trained<Self>, _job: &BatchJob<'_>, _device: &Device) -> Result<usize> {
        bail!(
            "a recommender ranks items per user: use `shopnet recommend --run RUN_DIR --users all --k 20 --output recs.csv`"
        )
    }

    fn schema(trained: &Trained<Self>) -> serde_json::Value {
        serde_json::json!({
            "input": { "format": "user ids as in the training interaction files", "sizes": trained.input },
            "output": RecommendationWriter::COLUMNS,
        })
    }

    fn online(trained: Trained<Self>, device: &Device) -> Result<Box<dyn Served>> {
        let task = Self::restore(&trained, device)?;
        let ranker = task.ranker(&driver::load_net(&trained, device)?);
        let signature = Signature {
            inputs: vec![TensorSpec::new("user_id", Datatype::Int64, &[-1])],
            outputs: vec![
                TensorSpec::new("item_ids", Datatype::Int64, &[-1, -1]),
                TensorSpec::new("scores", Datatype::Fp32, &[-1, -1]),
            ],
            parameters: vec![(
                "k",
                format!(
                    "items per user, 1 to {} (default {DEFAULT_K}); -1 item ids with score 0 pad a user with fewer unseen items",
                    task.data.num_items
                ),
            )],
        };
        let users = task.trained_user_index();
        Ok(Box::new(OnlineRecommender { signature, task, ranker, users }))
    }
}

/// Items per user when a request does not say.
const DEFAULT_K: usize = 20;

/// The trained recommender answering `user_id` requests with each user's top `k` unseen
/// items, as `recommend` ranks them.
struct OnlineRecommender {
    signature: Signature,
    task: Recommendation,
    ranker: Ranker,
    users: HashMap<u64, u32>,
}

impl Online for OnlineRecommender {
    /// The user's index and how many items it asks for.
    type Example = (u32, usize);

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn parse(&self, request: &Request) -> std::result::Result<Vec<(u32, usize)>, String> {
        let k = online::count_parameter(request, "k", DEFAULT_K, self.task.data.num_items)?;
        online::integers(request.input("user_id"))
            .iter()
            .map(|&id| {
                u64::try_from(id)
                    .ok()
                    .and_then(|id| self.users.get(&id))
                    .map(|&user| (user, k))
                    .ok_or_else(|| format!("user {id} has no training interactions"))
            })
            .collect()
    }

    fn predict(&self, examples: &[(u32, usize)]) -> Result<Vec<Vec<Values>>> {
        let users: Vec<u32> = examples.iter().map(|&(user, _)| user).collect();
        let mut out = Vec::with_capacity(examples.len());
        let mut at = 0;
        self.task.rank(&self.ranker, &users, |_, scores| {
            let k = examples[at].1;
            at += 1;
            let top = metrics::top_k(scores, k);
            let mut items: Vec<i64> =
                top.iter().map(|&item| self.task.data.item_id(item) as i64).collect();
            let mut values: Vec<f32> = top.iter().map(|&item| scores[item as usize]).collect();
            items.resize(k, -1);
            values.resize(k, 0.0);
            out.push(vec![Values::Int64(items), Values::Fp32(values)]);
            Ok(())
        })?;
        Ok(out)
    }

    fn warmup_example(&self) -> (u32, usize) {
        (self.users.values().next().copied().unwrap_or(0), 1)
    }
}

impl Recommend for RecommenderFamily {
    fn recommend(
        trained: &Trained<Self>,
        job: &BatchJob<'_>,
        k: usize,
        device: &Device,
    ) -> Result<usize> {
        let task = Self::restore(trained, device)?;
        let model = driver::load_net(trained, device)?;
        let mut user_list: Vec<u32> = match job.input {
            "all" => task.trained_users().collect(),
            file => read_user_ids(Path::new(file), &task)?,
        };
        user_list.retain(|&user| job.shard.holds(&task.data.user_id(user).to_string()));
        let mut writer = RecommendationWriter::create(job.output)?;
        let progress = Progress::new(Some(user_list.len() as u64), 0, "users");
        task.rank(&task.ranker(&model), &user_list, |user, scores| {
            for (rank, item) in metrics::top_k(scores, k).into_iter().enumerate() {
                writer.write(
                    task.data.user_id(user),
                    rank + 1,
                    task.data.item_id(item),
                    scores[item as usize],
                )?;
            }
            progress.advance(1, None);
            Ok(())
        })?;
        progress.finish();
        writer.finish()
    }
}

/// The file `[data]` reads interactions from, for messages.
fn source_name(data: &InteractionDataConfig) -> &str {
    data.train.as_deref().or(data.events.as_deref()).unwrap_or("[data]")
}

/// One user id per line, as in the interaction files; each must be a trained user.
fn read_user_ids(path: &Path, task: &Recommendation) -> Result<Vec<u32>> {
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let trained = task.trained_user_index();
    let mut users = Vec::new();
    for (number, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{}: cannot read", path.display()))?;
        let raw = line.trim();
        if raw.is_empty() {
            continue;
        }
        let id: u64 = raw.parse().map_err(|_| {
            anyhow!("{}:{}: expected a user id, got {}", path.display(), number + 1, quoted(raw))
        })?;
        let index = trained.get(&id).ok_or_else(|| {
            anyhow!("{}:{}: user {id} has no training interactions", path.display(), number + 1)
        })?;
        users.push(*index);
    }
    if users.is_empty() {
        bail!("{}: no user ids", path.display());
    }
    Ok(users)
}
