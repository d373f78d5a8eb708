package btconvert

// WeightsOnDisk is weightsOnDisk for the package's external tests.
var WeightsOnDisk = weightsOnDisk
