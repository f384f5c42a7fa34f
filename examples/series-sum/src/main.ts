console.log("series-sum: placeholder");
