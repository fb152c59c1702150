#include "experiments/lib/train.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <iostream>

#include "autograd/functional.h"
#include "autograd/node.h"
#include "cuda/cuda.h"
#include "dist/ddp.h"
#include "dist/process_group.h"
#include "experiments/lib/recipe.h"
#include "models/checkpoint.h"

namespace dl::exp {

using Clock = std::chrono::steady_clock;

// ---- logging ------------------------------------------------------------------------------------

Logger::Logger(const fs::path& log_file, bool enabled) : enabled_(enabled), tty_(isatty(fileno(stdout)) != 0) {
  if (!enabled_) return;
  file_.open(log_file, std::ios::app);
  if (!file_) fail("cannot open log file '{}' for writing", log_file.string());
}

void Logger::info(const std::string& line) {
  if (!enabled_) return;
  end_progress();
  std::cout << line << std::endl;
  file_ << line << "\n";
  file_.flush();
}

void Logger::progress(const std::string& line, bool force) {
  if (!enabled_) return;
  if (tty_) {
    std::cout << "\r\033[K" << line << std::flush;
    open_line_ = true;
    return;
  }
  // not a terminal (a log, CI): a plain line now and then
  double now = std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
  if (force || last_print_ < 0 || now - last_print_ >= 15.0) {
    std::cout << line << std::endl;
    last_print_ = now;
  }
}

void Logger::end_progress() {
  if (open_line_) {
    std::cout << "\n";
    open_line_ = false;
  }
}

std::atomic<bool>& stop_requested() {
  static std::atomic<bool> flag{false};
  return flag;
}

namespace {
void on_sigint(int) {
  if (stop_requested().load()) std::_Exit(130);  // a second Ctrl-C stops at once
  stop_requested().store(true);
}

std::string duration_str(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, (t % 3600) / 60);
  if (t >= 60) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

int64_t count_correct(const Tensor& logits, const Tensor& labels) {
  return logits.argmax(1).eq(labels).sum().item<int64_t>();
}
}  // namespace

void install_interrupt_handler() {
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

void check_writable(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("cannot create the output folder '{}': {}", dir.string(), ec.message());
  fs::path probe = dir / ".write-probe";
  {
    std::ofstream f(probe);
    if (!f || !(f << "ok") || !f.flush()) fail("the output folder '{}' is not writable (or the disk is full)", dir.string());
  }
  fs::remove(probe, ec);
  auto space = fs::space(dir, ec);
  if (!ec && space.available < 16u * 1024 * 1024)
    fail("the output folder '{}' has only {} KiB free; a run needs room for its checkpoints", dir.string(),
         space.available / 1024);
}

Device parse_device(const std::string& s) {
  Device d = Device::parse(s);
  if (d.is_cuda()) {
    if (!cuda::built_with_cuda()) fail("--device {}: {}", s, cuda::unavailable_reason());
    if (!cuda::is_available()) fail("--device {}: {}", s, cuda::unavailable_reason());
    if (d.index >= cuda::device_count())
      fail("--device {}: this machine has {} CUDA device(s)", s, cuda::device_count());
    cuda::init();  // registers the CUDA allocator, copies and kernels
  }
  return d;
}

// ---- evaluation ---------------------------------------------------------------------------------

EvalResult evaluate(nn::Module& model, const ForwardFn& forward, data::DataLoader& loader, int64_t epoch,
                    bool keep_predictions, Logger* log, const std::string& what) {
  bool was_training = model.is_training();
  model.eval();
  NoGradGuard ng;
  EvalResult r;
  double loss_sum = 0;
  int64_t correct = 0, seen = 0, nb = loader.num_batches(), b = 0;
  auto t0 = Clock::now();
  for (auto& batch : loader.epoch(epoch)) {
    if (stop_requested()) break;
    Tensor logits = forward(batch.images);
    Tensor labels = batch.labels.to(logits.device());
    loss_sum += cross_entropy(logits, labels, {.reduction = Reduction::Sum}).item<double>();
    correct += count_correct(logits, labels);
    seen += labels.size(0);
    if (keep_predictions) {
      Tensor probs = logits.softmax(1).to(kCPU);
      Tensor pred = logits.argmax(1).to(kCPU);
      auto pv = probs.to_vector<float>();
      auto pr = pred.to_vector<int64_t>();
      auto lv = batch.labels.to_vector<int64_t>();
      int64_t c = logits.size(1);
      for (size_t i = 0; i < batch.indices.size(); ++i)
        r.predictions.push_back({batch.indices[i], lv[i], pr[i], std::vector<float>(pv.begin() + i * c, pv.begin() + (i + 1) * c)});
    }
    ++b;
    if (log) {
      double el = std::chrono::duration<double>(Clock::now() - t0).count();
      log->progress(fmt::format("  {} batch {}/{}  acc {:.4f}  {:.0f} img/s  left {}", what, b, nb,
                                seen ? static_cast<double>(correct) / seen : 0.0, seen / std::max(el, 1e-9),
                                duration_str(el / b * (nb - b))));
    }
  }
  if (log) log->end_progress();
  model.train(was_training);
  r.seen = seen;
  r.loss = seen ? loss_sum / seen : 0;
  r.accuracy = seen ? static_cast<double>(correct) / seen : 0;
  return r;
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  NoGradGuard ng;
  double total = 0;
  for (const auto& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    total += (g * g).sum().item<double>();
  }
  total = std::sqrt(total);
  if (max_norm > 0 && total > max_norm) {
    double scale = max_norm / (total + 1e-6);
    for (const auto& p : params) {
      Tensor g = p.grad();
      if (g.defined()) g.mul_(scale);  // in place: the gradient the optimizer will read
    }
  }
  return total;
}

// ---- checkpoints --------------------------------------------------------------------------------

namespace {

void save_last(const fs::path& run, nn::Module& model, optim::Optimizer& opt, optim::LRScheduler* sched,
               const optim::GradScaler& scaler, int64_t epochs_done, const FitResult& res, const FitOptions& options) {
  Checkpoint c;
  c.model = model.state_dict();
  optim::OptimizerState os = opt.state_dict();
  c.optimizer = os.tensors;
  nlohmann::json hist = nlohmann::json::array();
  for (const auto& h : res.history)
    hist.push_back({h.epoch, h.train_loss, h.train_acc, h.val_loss, h.val_acc, h.lr, h.seconds});
  c.meta = {{"epochs_done", epochs_done},
            {"optimizer", os.meta},
            {"scheduler", sched ? sched->state_dict() : nlohmann::json()},
            {"generator", generator_state_to_json(default_generator().state())},
            {"history", hist},
            {"best_epoch", res.best_epoch},
            {"best_val_acc", res.best_val_acc},
            {"config", options.config}};
  if (scaler.is_enabled()) c.meta["grad_scaler"] = scaler.state_dict();
  save_checkpoint((run / "last.ckpt").string(), c);
}

void save_best(const fs::path& run, nn::Module& model, int64_t epoch, double val_acc) {
  Checkpoint c;
  c.model = model.state_dict();
  c.meta = {{"epoch", epoch}, {"val_acc", val_acc}};
  save_checkpoint((run / "best.ckpt").string(), c);
}

}  // namespace

std::vector<std::string> config_differences(const nlohmann::json& a, const nlohmann::json& b) {
  // may change between a run and its resume; git_commit and machine are said in the log instead
  static const std::vector<std::string> ignored{"resume",  "out",        "threads", "omp_threads",
                                                "distributed", "git_commit", "machine", "estimate"};
  std::vector<std::string> diffs;
  if (!a.is_object() || !b.is_object()) return diffs;
  for (auto it = a.begin(); it != a.end(); ++it) {
    if (std::find(ignored.begin(), ignored.end(), it.key()) != ignored.end()) continue;
    if (!b.contains(it.key()) || b.at(it.key()) != it.value())
      diffs.push_back(fmt::format("{}: checkpoint {} vs now {}", it.key(), it.value().dump(),
                                  b.contains(it.key()) ? b.at(it.key()).dump() : "(absent)"));
  }
  // options added since a checkpoint was written: it was made with their implied value then
  if (!a.contains("split_seed") && b.contains("split_seed") && a.contains("seed") && b.at("split_seed") != a.at("seed"))
    diffs.push_back(fmt::format("split_seed: checkpoint {} (its --seed) vs now {}", a.at("seed").dump(), b.at("split_seed").dump()));
  if (!a.contains("recipe") && b.contains("recipe")) {
    nlohmann::json now = b.at("recipe"), seed = Recipe().to_json();
    if (now.is_object()) now.erase("name");
    seed.erase("name");
    if (now != seed) diffs.push_back(fmt::format("recipe: checkpoint the seed recipe vs now {}", b.at("recipe").dump()));
  }
  return diffs;
}

void load_best_weights(nn::Module& model, const fs::path& run) {
  Checkpoint c = load_checkpoint((run / "best.ckpt").string());
  model.load_state_dict(c.model, true);
}

// ---- the loop -----------------------------------------------------------------------------------

FitResult fit(nn::Module& model, const ForwardFn& forward, optim::Optimizer& optimizer, optim::LRScheduler* scheduler,
              data::DataLoader& train, data::DataLoader& val, const fs::path& run, const FitOptions& options,
              Logger& log) {
  dist::ProcessGroup* pg = options.pg;
  const bool main_rank = !pg || pg->rank() == 0;
  if (main_rank) check_writable(run);
  // distributed: true on every rank when it is true on one (SIGINT may reach the ranks at different batches)
  // Distributed, stopping is decided together at agreement points (each batch, after validation),
  // so that no rank leaves the loop while another waits for it in a collective.
  bool agreed_stop = false;
  auto stopping = [&] { return pg ? agreed_stop : stop_requested().load(); };
  FitResult res;
  optim::GradScaler scaler(options.loss_scaling.value_or(optim::GradScalerOptions{.enabled = false}));
  int64_t start_epoch = 0;
  fs::path last = run / "last.ckpt";
  if (options.resume) {
    if (!fs::exists(last)) {
      log.info(fmt::format("--resume: no checkpoint at {}; starting from epoch 1", last.string()));
    } else {
      Checkpoint c = load_checkpoint(last.string());
      try {
        auto diffs = config_differences(c.meta.at("config"), options.config);
        if (!diffs.empty())
          fail("--resume: the checkpoint {} was written with other options:\n  {}\nstart a new run folder or use the "
               "same options", last.string(), fmt::join(diffs, "\n  "));
        model.load_state_dict(c.model, true);
        optimizer.load_state_dict({c.optimizer, c.meta.at("optimizer")});
        if (scheduler && !c.meta.at("scheduler").is_null()) scheduler->load_state_dict(c.meta.at("scheduler"));
        if (scaler.is_enabled()) scaler.load_state_dict(c.meta.at("grad_scaler"));
        default_generator().set_state(generator_state_from_json(c.meta.at("generator")));
        for (const auto& h : c.meta.at("history"))
          res.history.push_back({h.at(0).get<int64_t>(), h.at(1).get<double>(), h.at(2).get<double>(),
                                 h.at(3).get<double>(), h.at(4).get<double>(), h.at(5).get<double>(),
                                 h.at(6).get<double>()});
        res.best_epoch = c.meta.at("best_epoch").get<int64_t>();
        res.best_val_acc = c.meta.at("best_val_acc").get<double>();
        start_epoch = c.meta.at("epochs_done").get<int64_t>();
        if (start_epoch < 0 || start_epoch != static_cast<int64_t>(res.history.size()))
          fail("it says {} epochs are done but holds {} history rows", start_epoch, res.history.size());
      } catch (const nlohmann::json::exception& e) {
        fail("--resume: checkpoint {} has malformed metadata ({}); delete it to start over", last.string(), e.what());
      } catch (const dl::Error& e) {
        if (std::string(e.what()).rfind("--resume", 0) == 0) throw;
        fail("--resume: cannot continue from {}: {}", last.string(), e.what());
      }
      log.info(fmt::format("resumed from {}: {} of {} epochs done", last.string(), start_epoch, options.epochs));
      for (const char* k : {"git_commit", "machine"}) {
        const nlohmann::json& then = c.meta.at("config");
        if (then.contains(k) && options.config.contains(k) && then.at(k) != options.config.at(k))
          log.info(fmt::format("note: {} was {} when the run started, now {}", k, then.at(k).dump(), options.config.at(k).dump()));
      }
    }
  }

  std::vector<Tensor> params;
  for (const auto& g : optimizer.param_groups())
    for (const auto& p : g.params) params.push_back(p);
  auto t_start = Clock::now();
  int64_t nb = train.num_batches();
  // early stopping: the best validation accuracy is `patience` epochs old (also after a resume)
  auto patience_spent = [&] {
    return options.early_stop_patience > 0 && res.best_epoch > 0 &&
           static_cast<int64_t>(res.history.size()) - res.best_epoch >= options.early_stop_patience;
  };
  for (int64_t epoch = start_epoch; epoch < options.epochs && !stopping(); ++epoch) {
    if (patience_spent()) {
      res.stopped_early = epoch;
      log.info(fmt::format("early stopping after epoch {}: no better validation accuracy since epoch {} ({:.4f}), "
                           "{} epochs of patience",
                           epoch, res.best_epoch, res.best_val_acc, options.early_stop_patience));
      break;
    }
    model.train();
    auto t0 = Clock::now();
    double lr = optimizer.param_groups().at(0).lr;
    double loss_sum = 0;
    int64_t correct = 0, seen = 0, b = 0, skipped = 0, overflowed = 0;
    for (auto& batch : train.epoch(epoch)) {
      Tensor logits, loss;
      if (options.train_loss) loss = options.train_loss(forward, batch, logits);
      else logits = forward(batch.images);
      Tensor labels = batch.labels.to(logits.device());
      if (!options.train_loss) loss = cross_entropy(logits, labels);
      double lv = loss.item<double>();
      ++b;
      bool nonfinite = !std::isfinite(lv);
      if (pg) {  // one small all-reduce per batch: every rank skips, stops or steps together
        Tensor flags = from_vector<double>({stop_requested() ? 1.0 : 0.0, nonfinite ? 1.0 : 0.0}, {2});
        pg->allreduce(flags, dist::ReduceOp::Max);
        auto f = flags.to_vector<double>();
        agreed_stop = f[0] > 0;
        if (f[1] > 0 && !nonfinite) {
          lv = NAN;  // another rank's loss is not finite
          nonfinite = true;
        }
      }
      if (nonfinite) {
        if (!options.skip_nonfinite)
          fail("the loss became {} at epoch {}, batch {} of {}; lower the learning rate, clip gradients "
               "(--clip-grad-norm), or pass --skip-nonfinite to skip such batches",
               lv, epoch + 1, b, nb);
        log.info(fmt::format("warning: loss {} at epoch {}, batch {}: batch skipped", lv, epoch + 1, b));
        ++skipped;
        continue;
      }
      optimizer.zero_grad();
      if (scaler.is_enabled()) {
        scaler.scale(loss).backward();
        scaler.unscale_(optimizer);  // clipping sees the true gradients
        if (options.clip_grad_norm > 0) clip_grad_norm(params, options.clip_grad_norm);
        if (!scaler.step(optimizer)) ++overflowed;  // inf/NaN gradients: no step, the scale backs off
        scaler.update();
      } else {
        loss.backward();
        if (options.clip_grad_norm > 0) clip_grad_norm(params, options.clip_grad_norm);
        optimizer.step();
      }
      if (scheduler && options.scheduler_per_batch) scheduler->step();
      int64_t n = labels.size(0);
      loss_sum += lv * static_cast<double>(n);
      {
        NoGradGuard ng;
        correct += count_correct(logits, labels);
      }
      seen += n;
      double el = std::chrono::duration<double>(Clock::now() - t0).count();
      double per_batch = el / static_cast<double>(b);
      double left = per_batch * static_cast<double>(nb - b) +
                    per_batch * static_cast<double>(nb) * 1.15 * static_cast<double>(options.epochs - epoch - 1);
      log.progress(fmt::format("epoch {}/{}  batch {}/{}  loss {:.4f}  acc {:.4f}  {:.0f} img/s  left {}", epoch + 1,
                               options.epochs, b, nb, loss_sum / seen, static_cast<double>(correct) / seen,
                               seen / std::max(el, 1e-9), duration_str(left)));
      if (stopping()) break;
    }
    if (pg) {  // the epoch's train metrics over every rank's shard
      Tensor m = from_vector<double>({loss_sum, static_cast<double>(correct), static_cast<double>(seen)}, {3});
      pg->allreduce(m, dist::ReduceOp::Sum);
      auto v = m.to_vector<double>();
      loss_sum = v[0];
      correct = static_cast<int64_t>(v[1] + 0.5);
      seen = static_cast<int64_t>(v[2] + 0.5);
    }
    if (stopping()) {
      res.interrupted = true;
      log.info(fmt::format("interrupted during epoch {}: the last completed epoch ({}) is saved in {}; run again "
                           "with --resume to continue",
                           epoch + 1, epoch, last.string()));
      break;
    }
    if (pg) dist::broadcast_buffers(model, *pg);  // every rank scores, and rank 0 saves, one model
    EvalResult v = evaluate(model, forward, val, epoch, false, &log, "validation");
    if (pg) {
      agreed_stop = pg->allreduce(stop_requested() ? 1.0 : 0.0, dist::ReduceOp::Max) > 0;
      Tensor m = from_vector<double>({v.loss * v.seen, v.accuracy * v.seen, static_cast<double>(v.seen)}, {3});
      pg->allreduce(m, dist::ReduceOp::Sum);
      auto x = m.to_vector<double>();
      v.seen = static_cast<int64_t>(x[2] + 0.5);
      v.loss = v.seen ? x[0] / x[2] : 0;
      v.accuracy = v.seen ? x[1] / x[2] : 0;
    }
    if (stopping()) {
      res.interrupted = true;
      log.info(fmt::format("interrupted during epoch {}'s validation; run again with --resume", epoch + 1));
      break;
    }
    if (scheduler && !options.scheduler_per_batch) scheduler->step();
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    EpochRecord rec{epoch + 1, seen ? loss_sum / seen : NAN, seen ? static_cast<double>(correct) / seen : NAN,
                    v.loss, v.accuracy, lr, secs};
    res.history.push_back(rec);
    if (v.accuracy > res.best_val_acc) {
      res.best_val_acc = v.accuracy;
      res.best_epoch = epoch + 1;
      if (main_rank) save_best(run, model, epoch + 1, v.accuracy);
    }
    if (main_rank) {
      save_last(run, model, optimizer, scheduler, scaler, epoch + 1, res, options);
      write_history(run / "history.csv", res.history);
    }
    res.overflow_steps += overflowed;
    log.info(fmt::format("epoch {}/{}: train loss {:.4f} acc {:.4f} | val loss {:.4f} acc {:.4f} | lr {:g} | {}{}{}",
                         epoch + 1, options.epochs, rec.train_loss, rec.train_acc, rec.val_loss, rec.val_acc, lr,
                         duration_str(secs), skipped ? fmt::format(" | {} batches skipped", skipped) : "",
                         scaler.is_enabled() ? fmt::format(" | loss scale {:g}, {} steps skipped (inf/NaN gradients)",
                                                           scaler.get_scale(), overflowed)
                                             : ""));
  }
  if (pg) pg->barrier();  // rank 0's checkpoints are on disk before any rank reads best.ckpt
  res.seconds = std::chrono::duration<double>(Clock::now() - t_start).count();
  res.loss_scale = scaler.get_scale();
  return res;
}

}  // namespace dl::exp
