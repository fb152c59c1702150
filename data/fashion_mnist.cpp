#include "data/fashion_mnist.h"

#include <cstdlib>
#include <filesystem>

#include "data/idx.h"

namespace dl::data {

std::string fashion_mnist_dir(const std::optional<std::string>& explicit_dir) {
  if (explicit_dir && !explicit_dir->empty()) return *explicit_dir;
  if (const char* env = std::getenv("DL_DATA_DIR"); env && *env) return env;
  return kDefaultFashionMnistDir;
}

std::string fashion_mnist_file(const std::string& dir, FashionSplit split, bool labels) {
  namespace fs = std::filesystem;
  std::string stem = fmt::format("{}-{}-idx{}-ubyte", split == FashionSplit::Train ? "train" : "t10k",
                                 labels ? "labels" : "images", labels ? 1 : 3);
  const char* hint = "install the data set with `apt-get install dataset-fashion-mnist`, or point --data-dir (or "
                     "the DL_DATA_DIR environment variable) at a directory holding the four Fashion-MNIST IDX files";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail("Fashion-MNIST directory '{}' does not exist: {}", dir, hint);
  for (const std::string& name : {stem + ".gz", stem}) {
    fs::path p = fs::path(dir) / name;
    if (fs::is_regular_file(p, ec)) return p.string();
  }
  fail("Fashion-MNIST file '{}.gz' (or '{}') is missing in '{}': {}", stem, stem, dir, hint);
}

ImageSet load_idx_image_set(const std::string& images_path, const std::string& labels_path, int64_t num_classes) {
  IdxArray img = read_idx(images_path);
  if (img.type != IdxType::UInt8 || img.dims.size() != 3)
    fail("IDX image file '{}' holds {} with dims {}; expected uint8 images (N, H, W)", images_path,
         idx_type_name(img.type), shape_str(img.dims));
  IdxArray lab = read_idx(labels_path);
  if (lab.type != IdxType::UInt8 || lab.dims.size() != 1)
    fail("IDX label file '{}' holds {} with dims {}; expected uint8 labels (N)", labels_path, idx_type_name(lab.type),
         shape_str(lab.dims));
  if (img.dims[0] != lab.dims[0])
    fail("image and label counts disagree: '{}' holds {} images but '{}' holds {} labels", images_path, img.dims[0],
         labels_path, lab.dims[0]);
  ImageSet set;
  set.images_path = images_path;
  set.labels_path = labels_path;
  const int64_t n = lab.dims[0];
  set.labels = empty({n}, DType::Int64);
  int64_t* l = set.labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    l[i] = lab.bytes[static_cast<size_t>(i)];
    if (l[i] >= num_classes)
      fail("IDX label file '{}': label {} of sample {} is out of range; expected 0 to {}", labels_path, l[i], i,
           num_classes - 1);
  }
  set.images = img.to_tensor();
  return set;
}

ImageSet load_fashion_mnist(const std::string& dir, FashionSplit split) {
  std::string images = fashion_mnist_file(dir, split, false);
  std::string labels = fashion_mnist_file(dir, split, true);
  ImageSet set = load_idx_image_set(images, labels, kFashionMnistClasses);
  if (set.images.size(1) != 28 || set.images.size(2) != 28)
    fail("Fashion-MNIST image file '{}' holds {}x{} images; expected 28x28", images, set.images.size(1),
         set.images.size(2));
  return set;
}

}  // namespace dl::data
