//! Model families: what each fits, how it turns inputs into class probabilities, and how it is
//! saved and loaded.

pub mod forest;
pub mod kernel_ridge;
pub mod knn;
pub mod svm;
