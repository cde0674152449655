#pragma once
// rlhf-train's command line: `rlhf-train METHOD [--config FILE.json] [--key value ...]`. The keys are the shared
// TrainingArguments' and the method's own (registry.hpp); each is checked — name, type, range, then the
// combinations — before any work, and a refusal is one line naming the key, exit status 2.
#include <memory>
#include <string>

#include "method.hpp"
#include "training_args.hpp"

namespace trainer {

struct Parsed {
  int exit_code = -1;  // -1: go on and train; else exit now with it (0 after --help, 2 on a refused argument)
  TrainingArguments args;
  std::unique_ptr<Method> method;
};

Parsed parse_arguments(int argc, char** argv);

// Every setting of the run, the method's too, as one JSON object (trainer_config.json).
std::string settings_json(const TrainingArguments& args, Method& method);

}  // namespace trainer
