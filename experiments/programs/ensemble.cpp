// ensemble: averaged probabilities over several trained models of a results folder (the seed
// models of a recipe, or models of different architectures), scored on the shared test images and
// compared, paired, with the best single member; optionally the members' softened probabilities
// on the training split's images, averaged, as a teacher file for distillation (scratch_cnn --teacher).
//
//   build/bin/ensemble --results R --name NAME --members seeds/best_s42,seeds/best_s43,...
//                      [--teacher-out FILE --temperature 4] [--device D] [--estimate]
//
// Writes R/ensembles/NAME/ensemble.json (members, each member's test accuracy recomputed and checked
// against its metrics.json, the ensemble's accuracy, NLL and ECE, the paired comparison) and
// predictions.csv. Fewer than two usable members: not_run.txt says why, and the exit status is 0.
#include <iostream>

#include "experiments/lib/calibration.h"
#include "experiments/lib/metrics.h"
#include "experiments/lib/recipe.h"
#include "experiments/lib/run_model.h"
#include "experiments/lib/study.h"
#include "tensor/ops.h"

using namespace dl;
using namespace dl::exp;
namespace fs = std::filesystem;

int main(int argc, char** argv) {
  CLI::App app{"ensemble: averaged probabilities of trained models, against the best single one"};
  std::string results, name, teacher_out, device_name = "cpu", data_dir;
  std::vector<std::string> members;
  double temperature = 4.0;
  bool estimate = false;
  app.add_option("--results", results, "the results folder")->required();
  app.add_option("--name", name, "the ensemble's name (its folder under R/ensembles)")->required();
  app.add_option("--members", members, "run folders relative to R, comma-separated")->delimiter(',')->required();
  app.add_option("--teacher-out", teacher_out, "also write the members' averaged softened probabilities on the training images");
  app.add_option("--temperature", temperature, "the teacher's temperature")->check(CLI::PositiveNumber);
  app.add_option("--device", device_name, "cpu or cuda[:N]");
  app.add_option("--data-dir", data_dir, "Fashion-MNIST folder (default: the one each run recorded)");
  app.add_flag("--estimate", estimate, "time a few batches and print the expected duration; write nothing");
  CLI11_PARSE(app, argc, argv);
  try {
    const Device device = parse_device(device_name);
    const fs::path R(results), out = R / "ensembles" / name;
    std::vector<std::string> usable, skipped;
    for (const auto& m : members) {
      std::string why = run_not_usable(R / m);
      if (why.empty()) usable.push_back(m);
      else skipped.push_back(m + ": " + why);
    }
    if (usable.size() < 2) {
      std::string msg = fmt::format("ensemble '{}' not run: {} usable member(s) of {} ({})", name, usable.size(),
                                    members.size(), skipped.empty() ? "" : fmt::format("{}", fmt::join(skipped, "; ")));
      std::cout << msg << "\n";
      if (!estimate) {
        fs::create_directories(out);
        fs::remove(out / "ensemble.json");
        if (!teacher_out.empty()) fs::remove(teacher_out);  // no stale teacher for a distillation to read
        write_text_atomic(out / "not_run.txt", msg + "\n");
      }
      return 0;
    }
    StudyData d = run_study_data(R / usable[0], data_dir);
    const int64_t classes = data::kFashionMnistClasses;
    if (estimate) {
      RunModel rm = load_run_model(R / usable[0]);
      rm.to(device);
      const int64_t bs = eval_batch_size(rm);
      Tensor few = select_rows(d.test_set.images, std::vector<int64_t>(d.test_idx.begin(), d.test_idx.begin() + std::min<size_t>(2 * bs, d.test_idx.size())));
      double ips = measure_images_per_second(rm, few, bs);
      double images = static_cast<double>(usable.size()) *
                      (d.test_idx.size() + (teacher_out.empty() ? 0.0 : static_cast<double>(d.train_idx.size())));
      std::cout << fmt::format("ensemble estimate: {}: {} members, {:.0f} images/s -> ~ {:.0f} s\n", name, usable.size(), ips,
                               images / ips);
      return 0;
    }
    check_writable(out);
    fs::remove(out / "not_run.txt");
    if (!teacher_out.empty()) fs::remove(teacher_out);
    Logger log(out / "log.txt");
    log.info(fmt::format("ensemble '{}': members {}{}", name, fmt::join(usable, ", "),
                         skipped.empty() ? "" : fmt::format(" (left out: {})", fmt::join(skipped, "; "))));
    const Tensor test_images = select_rows(d.test_set.images, d.test_idx);
    const std::vector<int64_t> labels = labels_of(d.test_set, d.test_idx);
    const int64_t n = static_cast<int64_t>(labels.size());

    std::vector<double> avg(static_cast<size_t>(n * classes), 0.0);
    nlohmann::json member_records = nlohmann::json::array();
    std::vector<std::vector<uint8_t>> member_correct;
    Tensor teacher_sum;
    for (const auto& m : usable) {
      const fs::path run = R / m;
      StudyData dm = run_study_data(run, data_dir);
      if (dm.test_idx != d.test_idx) fail("{} was tested on other images than {}; an ensemble needs the same test set", m, usable[0]);
      if (!teacher_out.empty() && dm.train_idx != d.train_idx)
        fail("{} was trained on other images than {}; a teacher is computed on one training split", m, usable[0]);
      RunModel rm = load_run_model(run);
      rm.to(device);
      auto t0 = std::chrono::steady_clock::now();
      std::vector<double> p = softmax_rows(logits_as_doubles(run_model_logits(rm, test_images, eval_batch_size(rm))), classes);
      const std::vector<int64_t> pred = argmax_rows(p, classes);
      std::vector<uint8_t> correct(n);
      for (int64_t i = 0; i < n; ++i) correct[i] = pred[i] == labels[i];
      for (size_t k = 0; k < p.size(); ++k) avg[k] += p[k] / static_cast<double>(usable.size());
      nlohmann::json metrics = read_json(run / "metrics.json");
      double acc = 0;
      for (uint8_t c : correct) acc += c;
      acc /= static_cast<double>(n);
      double recorded = metrics.at("test").at("accuracy").get<double>();
      // the model runs at the run's precision (RunModel::precision), so its predictions are the
      // recorded ones; a GPU's or a kernel's rounding may still flip a borderline image: said, not fatal
      const int64_t differ = std::llround(std::abs(acc - recorded) * static_cast<double>(n));
      if (differ > 0)
        log.info(fmt::format("  warning: {}: the recomputed test accuracy {:.4f} differs from its metrics.json ({:.4f}) "
                             "by {} image(s)", m, acc, recorded, differ));
      if (differ > std::max<int64_t>(5, n / 1000))
        fail("{}: the recomputed test accuracy {:.4f} differs from its metrics.json ({:.4f}) by {} images: the run's "
             "files and its model disagree", m, acc, recorded, differ);
      CalibrationStats cs = calibration_from_probs(p, labels, classes);
      member_records.push_back({{"run", m},
                                {"display", metrics.value("display_name", m)},
                                {"test_accuracy", acc},
                                {"recorded_test_accuracy", recorded},
                                {"best_val_acc", metrics.value("best_val_acc", NAN)},
                                {"test_nll", cs.nll},
                                {"test_ece", cs.ece}});
      member_correct.push_back(std::move(correct));
      log.info(fmt::format("  {}: test accuracy {:.4f} (its metrics.json: {:.4f}), {:.0f} s", m, acc, recorded, seconds_since(t0)));
      if (!teacher_out.empty()) {
        auto t1 = std::chrono::steady_clock::now();
        // the training split's images only (the student trains on them; the other rows stay NaN)
        const int64_t nt = static_cast<int64_t>(d.train_idx.size());
        Tensor z = run_model_logits(rm, select_rows(d.train_set.images, d.train_idx), eval_batch_size(rm), [&](int64_t k) {
          log.progress(fmt::format("  {} teacher logits: {}/{} training images", m, k, nt));
        });
        log.end_progress();
        Tensor soft = (z * (1.0 / temperature)).softmax(1);
        teacher_sum = teacher_sum.defined() ? teacher_sum + soft : soft;
        log.info(fmt::format("  {}: softened probabilities (T {:g}) on the {} training-split images, {:.0f} s", m, temperature,
                             d.train_idx.size(), seconds_since(t1)));
      }
    }
    const std::vector<int64_t> ens_pred = argmax_rows(avg, classes);
    std::vector<uint8_t> ens_correct(n);
    std::vector<Prediction> preds;
    for (int64_t i = 0; i < n; ++i) {
      ens_correct[i] = ens_pred[i] == labels[i];
      Prediction pr{d.test_idx[i], labels[i], ens_pred[i], {}};
      for (int64_t c = 0; c < classes; ++c) pr.probs.push_back(static_cast<float>(avg[i * classes + c]));
      preds.push_back(std::move(pr));
    }
    size_t best = 0;
    for (size_t k = 1; k < member_records.size(); ++k)
      if (member_records[k]["test_accuracy"].get<double>() > member_records[best]["test_accuracy"].get<double>()) best = k;
    PairedComparison pc = compare_paired(ens_correct, member_correct[best]);
    CalibrationStats ecs = calibration_from_probs(avg, labels, classes);
    Metrics em = compute_metrics(labels, ens_pred, classes);
    double mean_member = 0;
    for (const auto& r : member_records) mean_member += r["test_accuracy"].get<double>() / static_cast<double>(member_records.size());
    nlohmann::json rec{{"name", name},
                       {"members", member_records},
                       {"left_out", skipped},
                       {"test_images", n},
                       {"combination", "mean of the members' softmax probabilities; prediction = its first argmax"},
                       {"accuracy", em.accuracy},
                       {"macro_f1", em.macro.f1},
                       {"test_nll", ecs.nll},
                       {"test_ece", ecs.ece},
                       {"mean_member_accuracy", mean_member},
                       {"best_member", member_records[best]["run"]},
                       {"best_member_choice", "the member with the highest test accuracy (the hardest comparison for the ensemble)"},
                       {"vs_best_member",
                        {{"diff", pc.diff}, {"ci_low", pc.ci_low}, {"ci_high", pc.ci_high}, {"ensemble_only", pc.a_only},
                         {"member_only", pc.b_only}, {"mcnemar_p", pc.mcnemar_p}, {"bootstrap_samples", pc.bootstrap_samples}}},
                       {"confusion", em.confusion},
                       {"evaluated", timestamp()}};
    if (!teacher_out.empty()) {
      Teacher t;
      Tensor avg_soft = (teacher_sum * (1.0 / static_cast<double>(usable.size()))).contiguous();
      std::vector<float> rows(static_cast<size_t>(d.train_set.size() * classes), NAN);
      const float* a = avg_soft.data_ptr<float>();
      for (size_t i = 0; i < d.train_idx.size(); ++i)
        std::copy(a + i * classes, a + (i + 1) * classes, rows.begin() + d.train_idx[i] * classes);
      t.probs = from_vector<float>(rows, {d.train_set.size(), classes});
      t.temperature = temperature;
      t.members = usable;
      save_teacher(teacher_out, t);
      rec["teacher"] = {{"file", teacher_out}, {"temperature", temperature}, {"images", d.train_set.size()},
                        {"inputs", "the unaugmented images of the training split (the other rows of the file are NaN)"},
                        {"rows", d.train_idx.size()}};
      log.info(fmt::format("teacher file {} (T {:g}, {} members)", teacher_out, temperature, usable.size()));
    }
    write_predictions(out / "predictions.csv", preds);
    write_json(out / "ensemble.json", rec);
    log.info(fmt::format("ensemble '{}' of {}: test accuracy {:.4f} (members {:.4f} on average, best {} {:.4f}); "
                         "difference {:+.4f}, 95% interval [{:+.4f}, {:+.4f}], McNemar p {:.3g}; NLL {:.4f}, ECE {:.4f}",
                         name, usable.size(), em.accuracy, mean_member, member_records[best]["run"].get<std::string>(),
                         member_records[best]["test_accuracy"].get<double>(), pc.diff, pc.ci_low, pc.ci_high, pc.mcnemar_p,
                         ecs.nll, ecs.ece));
  } catch (const std::exception& e) {
    std::cerr << "ensemble: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
