# A small root module that needs no cloud account: a random name, a file, and a value kept in
# state.
terraform {
  required_providers {
    random = { source = "hashicorp/random" }
    local  = { source = "hashicorp/local" }
  }
}

variable "greeting" {
  type    = string
  default = "Hello"
}

variable "directory" {
  type        = string
  description = "Where the greeting file is written (on the machine that runs the module)."
  default     = "/tmp/landform-hello"
}

resource "random_pet" "name" {
  length = 2
}

resource "local_file" "greeting" {
  filename = "${var.directory}/greeting.txt"
  content  = "${var.greeting}, ${random_pet.name.id}!\n"
}

resource "terraform_data" "stamp" {
  input = random_pet.name.id
}

output "name" {
  value = random_pet.name.id
}

output "file" {
  value = local_file.greeting.filename
}
