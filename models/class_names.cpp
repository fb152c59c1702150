#include "models/class_names.h"

#include <cstdint>

namespace dl::models {

extern const char* const kImagenetClasses[];  // generated from models/imagenet_classes.txt
extern const int kImagenetClassCount;

const std::vector<std::string>& imagenet_classes() {
  static const std::vector<std::string> names(kImagenetClasses, kImagenetClasses + kImagenetClassCount);
  return names;
}

const std::vector<std::string>& fashion_mnist_classes() {
  static const std::vector<std::string> names{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                              "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return names;
}

std::vector<std::string> class_names_for(int64_t n) {
  if (n == 1000) return imagenet_classes();
  if (n == 10) return fashion_mnist_classes();
  std::vector<std::string> out;
  for (int64_t i = 0; i < n; ++i) out.push_back("class " + std::to_string(i));
  return out;
}

}  // namespace dl::models
